"""Query-string filters. django-filter validates them, so a bad value is a 400, not a 500."""

from __future__ import annotations

import unicodedata
from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any

import django_filters
from django import forms
from django.core.exceptions import ValidationError
from django.db.models import Q, QuerySet
from django.db.models.fields.json import KeyTextTransform
from django_filters.fields import IsoDateTimeField
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.request import Request

from schedules import attention, dataset_keys, rows
from schedules.models import ImportRun, Record, ScheduledImport

from .pagination import _whole_number


class StrictFilterBackend(DjangoFilterBackend):
    """django-filter, refusing query parameters that nothing reads.

    A misspelt or unsupported filter (`?key=` where there was none, `?last_run_status=`) was
    ignored, and the caller got everything while believing it filtered. Allowed: what the view
    reads (`allowed_query_params`), and the 400 names exactly those.
    """

    def filter_queryset(self, request: Request, queryset: QuerySet, view: Any) -> QuerySet:
        filterset_class = self.get_filterset_class(view, queryset)
        check_query_params(
            request,
            allowed_query_params(view, filterset_class),
            repeatable_query_params(filterset_class),
        )
        check_filter_values(request, filterset_class)
        if (
            filterset_class is None
            or not request.query_params.keys() & filterset_class.base_filters
        ):
            # No filter asked for: django-filter would copy its filters and build and validate
            # a form for each request (a tenth of a list's CPU) to change nothing, as none of
            # ours filters on an absent value.
            return queryset
        return super().filter_queryset(request, queryset, view)


def allowed_query_params(view: Any, filterset_class: type | None) -> set[str]:
    """The query parameters `view` reads in this request: what it reads itself
    (`extra_query_params`); on a list, its filters and its paginator's parameters.

    A viewset's route on one object (`detail`: read, update, pause, trigger, ...) takes neither:
    it answers one object, so the list's filters and pages mean nothing there (before, the
    trigger's 400 named `page` and `page_size`, which it never read). A detail action that pages
    its answer says so (`paginated_detail`: an import's history and deliveries).
    """
    allowed = set(getattr(view, "extra_query_params", ()))
    one_object = bool(getattr(view, "detail", False))
    if filterset_class is not None and not one_object:
        allowed.update(filterset_class.base_filters)
    if not one_object or getattr(view, "paginated_detail", False):
        paginator = getattr(view, "paginator", None)
        for name in ("page_query_param", "page_size_query_param", "cursor_query_param"):
            if getattr(paginator, name, None):
                allowed.add(getattr(paginator, name))
    return allowed


def repeatable_query_params(filterset_class: type | None) -> set[str]:
    """The filters that take several values (`?status=failed&status=partial`)."""
    if filterset_class is None:
        return set()
    return {
        name
        for name, found in filterset_class.base_filters.items()
        if isinstance(found, django_filters.MultipleChoiceFilter)
        or name in getattr(filterset_class, "repeatable", ())
    }


def check_query_params(
    request: Request, allowed: set[str], repeatable: Collection[str] = ()
) -> None:
    """400 on a parameter the endpoint does not read, naming those it does, and on one given
    several times that takes one value: django-filter and DRF read the last of them, so
    `?status=active&status=paused` listed the paused imports alone."""
    unknown = sorted(set(request.query_params) - allowed)
    if unknown:
        takes = f"takes: {', '.join(sorted(allowed))}" if allowed else "takes no query parameters"
        raise serializers.ValidationError(
            {name: [f"unknown query parameter; this endpoint {takes}"] for name in unknown}
        )
    repeated = {
        name: len(values)
        for name, values in request.query_params.lists()
        if len(values) > 1 and name not in repeatable
    }
    if repeated:
        raise serializers.ValidationError(
            {
                name: [f"takes one value; it was given {times} times"]
                for name, times in sorted(repeated.items())
            }
        )


def check_filter_values(request: Request, filterset_class: type | None) -> None:
    """400 on a filter given with no value (`?import_id=`, `?status=`, `?key=`, or spaces alone),
    naming the filter and what it takes.

    django-filter skips a filter whose value is empty, so a script that built its query from a
    variable left empty (`?import_id=$ID`) asked for one import's runs and was answered every
    run of every import; the runs' `?status=` and `?trigger=` alone refused it, as choices
    that are none. Every value of a repeatable filter is looked at: the form reads the last
    one only, and `?field=city:Berlin&field=` listed every record."""
    if filterset_class is None:
        return
    words = getattr(filterset_class, "takes", {})
    empty = {
        name: [f"has no value: give {words.get(name) or takes(found)}; or leave the parameter out"]
        for name, found in filterset_class.base_filters.items()
        if any(not value.strip() for value in request.query_params.getlist(name))
    }
    if empty:
        raise serializers.ValidationError(empty)


def takes(found: django_filters.Filter) -> str:
    """What a filter takes, in words: its choices, or what its kind says (`takes`)."""
    choices = found.extra.get("choices")
    if choices:
        return f"one of: {', '.join(str(value) for value, _ in choices)}"
    return getattr(found, "takes", "a value")


def naming_choices(choices: list[tuple[str, str]]) -> dict[str, dict[str, str]]:
    """Field arguments so that a wrong value is told the valid ones (Django's "Select a valid
    choice" does not list them)."""
    valid = ", ".join(value for value, _ in choices)
    return {"error_messages": {"invalid_choice": f"%(value)s is not one of: {valid}"}}


# The words a yes-or-no query parameter takes (`?late=`, `?needs_attention=`, `?dry_run=`).
YES_NO_WORDS = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}


class YesNoField(forms.Field):
    """A yes or a no, as YES_NO_WORDS say it; any other value is refused naming them.

    django-filter's BooleanFilter takes `true` and `false` only and reads anything else as no
    filter at all: `?needs_attention=1` answered every import, as if every one needed it."""

    def to_python(self, value: Any) -> bool | None:
        if value in self.empty_values:
            return None
        word = str(value).strip().lower()
        if word not in YES_NO_WORDS:
            raise forms.ValidationError(f"{value!r} is not one of: {', '.join(YES_NO_WORDS)}")
        return YES_NO_WORDS[word]


class YesNoFilter(django_filters.Filter):
    field_class = YesNoField
    takes = f"one of: {', '.join(YES_NO_WORDS)}"


class IdField(forms.Field):
    """A row's id: a whole number in ASCII digits, from 1 to the largest an id can be.

    django-filter's NumberFilter reads a decimal, and the ORM cut it to a whole number:
    `?import_id=1.5`, `1.9`, `1e0` or ` 1` listed import 1's runs."""

    def to_python(self, value: Any) -> int | None:
        if value in self.empty_values:
            return None
        text = str(value)
        # The length first: int() of thousands of digits is refused (a 500), not a number.
        if not (
            len(text) <= len(str(rows.MAX_ID))
            and _whole_number(text)
            and 1 <= int(text) <= rows.MAX_ID
        ):
            raise forms.ValidationError(f"{value!r} is not {IdFilter.takes}")
        return int(text)


@extend_schema_field({"type": "integer", "format": "int64", "minimum": 1, "maximum": rows.MAX_ID})
class IdFilter(django_filters.Filter):
    field_class = IdField
    takes = f"an id: a whole number from 1 to {rows.MAX_ID}"


class NfcCharField(forms.CharField):
    """Text in one spelling however it was typed (NFC), as names are kept
    (ImportSerializer.validate_name): `café` typed decomposed, as macOS input methods and some
    clients send it, found nothing."""

    def to_python(self, value: Any) -> str:
        return unicodedata.normalize("NFC", super().to_python(value))


class NfcCharFilter(django_filters.CharFilter):
    field_class = NfcCharField


class ImportFilter(django_filters.FilterSet):
    # What a filter takes, in words, where neither its choices nor its kind say it
    # (check_filter_values: the 400 of an empty value).
    takes = {
        "dataset": "a dataset's name",
        "search": "words to find in the name, description or source URL",
    }

    status = django_filters.ChoiceFilter(
        choices=ScheduledImport.Status.choices, **naming_choices(ScheduledImport.Status.choices)
    )
    dataset = NfcCharFilter(field_name="dataset__name", max_length=100)
    search = NfcCharFilter(
        method="filter_search", max_length=200, help_text="in name, description and source URL"
    )
    last_run_status = django_filters.MultipleChoiceFilter(
        choices=ImportRun.Status.choices,
        distinct=False,  # the import's own column (RunFilter's status says why)
        help_text="the outcome of the last finished run (repeatable)",
        **naming_choices(ImportRun.Status.choices),
    )
    late = YesNoFilter(
        method="filter_late", help_text="a tick was missed, or the next one is overdue"
    )
    needs_attention = YesNoFilter(
        method="filter_needs_attention",
        help_text="what the dashboard lists: last run failed or partial, or late",
    )

    class Meta:
        model = ScheduledImport
        fields = ["status", "dataset", "search", "last_run_status", "late", "needs_attention"]

    def filter_late(self, queryset: QuerySet, name: str, value: bool) -> QuerySet:
        return _keep_or_drop(queryset, attention.late_condition(), value)

    def filter_needs_attention(self, queryset: QuerySet, name: str, value: bool) -> QuerySet:
        return _keep_or_drop(queryset, attention.attention_condition(), value)

    def filter_search(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        return queryset.filter(
            Q(name__icontains=value)
            | Q(description__icontains=value)
            | Q(source_url__icontains=value)
        )


def _keep_or_drop(queryset: QuerySet, condition: Q, keep: bool) -> QuerySet:
    return queryset.filter(condition) if keep else queryset.exclude(condition)


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
    takes = "a date and time (ISO 8601, e.g. 2024-05-01T06:00:00Z)"


class RunFilter(django_filters.FilterSet):
    # distinct=False: django-filter's default SELECT DISTINCT guards against a join's repeated
    # rows, and these compare the run's own columns; with it, the planner could not walk the
    # list's order index and stop at the page: a filtered count at a million runs took 411 ms
    # (87 without), its first page 86 ms (2 ms) (deeppages hunt).
    status = django_filters.MultipleChoiceFilter(
        choices=ImportRun.Status.choices,
        distinct=False,
        **naming_choices(ImportRun.Status.choices),
    )
    trigger = django_filters.MultipleChoiceFilter(
        choices=ImportRun.Trigger.choices,
        distinct=False,
        **naming_choices(ImportRun.Trigger.choices),
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
    import_id = IdFilter(field_name="scheduled_import_id")

    class Meta(RunFilter.Meta):
        fields = [*RunFilter.Meta.fields, "import_id"]


class RecordFilter(django_filters.FilterSet):
    """One record by its key (the unique (dataset, key) index), or records by field values."""

    # The key as given, or as the importer keeps it (trimmed): `?key=%20A-1%20`, copied from the
    # file, found nothing, and stripped of Python's whitespace `?key=%0BA-1` found `A-1` (review).
    key = django_filters.CharFilter(
        method="filter_key", strip=False, help_text="this key, as given or trimmed as imported"
    )
    field = django_filters.CharFilter(
        method="filter_field",
        help_text="`name:value`: the record's field `name` is exactly `value` (compared as "
        "text, so `price:10.5` matches the number 10.5); repeatable, all must hold",
    )

    repeatable = ("field",)
    takes = {"key": "a record's key", "field": "name:value (e.g. city:Berlin)"}

    class Meta:
        model = Record
        fields = ["key", "field"]

    def filter_key(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        return queryset.filter(key__in={value, dataset_keys.as_kept(value)})

    def filter_field(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        # Repeatable: django-filter hands over only the last value.
        for index, condition in enumerate(self.data.getlist(name)):
            column, sep, wanted = condition.partition(":")
            if not sep or not column:
                raise serializers.ValidationError(
                    {"field": [f"{condition!r} is not name:value (e.g. city:Berlin)"]}
                )
            if "\x00" in condition:
                # The form checks only the last value: an earlier one reached PostgreSQL, which
                # refuses NUL in text (a 500, and an export cut short with a 200).
                raise serializers.ValidationError({"field": ["Null characters are not allowed."]})
            alias = f"field_{index}"
            queryset = queryset.alias(**{alias: KeyTextTransform(column, "data")}).filter(
                **{alias: wanted}
            )
        return queryset
