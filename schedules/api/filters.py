"""Query-string filters. django-filter validates them, so a bad value is a 400, not a 500."""

from __future__ import annotations

from datetime import UTC, datetime

import django_filters
from django.core.exceptions import ValidationError
from django.db.models import Q, QuerySet
from django_filters.fields import IsoDateTimeField

from schedules.models import ImportRun, ScheduledImport


def naming_choices(choices: list[tuple[str, str]]) -> dict[str, dict[str, str]]:
    """Field arguments so that a wrong value is told the valid ones (Django's "Select a valid
    choice" does not list them)."""
    valid = ", ".join(value for value, _ in choices)
    return {"error_messages": {"invalid_choice": f"%(value)s is not one of: {valid}"}}


class ImportFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(
        choices=ScheduledImport.Status.choices, **naming_choices(ScheduledImport.Status.choices)
    )
    dataset = django_filters.CharFilter(field_name="dataset__name", max_length=100)
    search = django_filters.CharFilter(
        method="filter_search", max_length=200, help_text="in name, description and source URL"
    )

    class Meta:
        model = ScheduledImport
        fields = ["status", "dataset", "search"]

    def filter_search(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        return queryset.filter(
            Q(name__icontains=value)
            | Q(description__icontains=value)
            | Q(source_url__icontains=value)
        )


class UtcDateTimeField(IsoDateTimeField):
    """ISO 8601, normalised to UTC: PostgreSQL refuses offsets beyond ±15:59 (found by
    schemathesis as a 500 for `since=...+23:29`)."""

    def to_python(self, value: str | None) -> datetime | None:
        parsed = super().to_python(value)
        if parsed is None:
            return None
        try:
            return parsed.astimezone(UTC)
        except (OverflowError, ValueError) as error:
            raise ValidationError("date and time out of range") from error


class UtcDateTimeFilter(django_filters.IsoDateTimeFilter):
    field_class = UtcDateTimeField


class RunFilter(django_filters.FilterSet):
    status = django_filters.MultipleChoiceFilter(
        choices=ImportRun.Status.choices, **naming_choices(ImportRun.Status.choices)
    )
    trigger = django_filters.MultipleChoiceFilter(
        choices=ImportRun.Trigger.choices, **naming_choices(ImportRun.Trigger.choices)
    )
    since = UtcDateTimeFilter(
        field_name="queued_at", lookup_expr="gte", help_text="queued at or after (ISO 8601)"
    )
    until = UtcDateTimeFilter(
        field_name="queued_at", lookup_expr="lt", help_text="queued before (ISO 8601)"
    )

    class Meta:
        model = ImportRun
        fields = ["status", "trigger", "since", "until"]


class AllRunsFilter(RunFilter):
    import_id = django_filters.NumberFilter(
        field_name="scheduled_import_id", min_value=1, max_value=2**63 - 1
    )

    class Meta(RunFilter.Meta):
        fields = [*RunFilter.Meta.fields, "import_id"]
