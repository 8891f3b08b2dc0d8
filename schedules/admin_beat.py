"""django-celery-beat's "Periodic tasks" admin, with importbeat's own entries read-only.

An import's entry is written from the import (`ScheduledImport.sync_periodic_task`) and the
maintenance jobs from `CELERY_BEAT_SCHEDULE` when beat starts: an edit, a toggle or a deletion
here would run behind the import's back and be undone by its next save. They link to their
import instead, where pausing, resuming and rescheduling go through schedules.services.

The schedule rows (an interval, a crontab) are shared by every entry on that schedule, the
imports' and the maintenance jobs' alike: edited here, "every 60 seconds" made daily moved the
sweep and reconciliation to once a day and the imports' listed schedule with them, while what
fires an import stayed its own rule. A row an entry of importbeat uses is read-only too.

An import's entry is never run by beat's DatabaseScheduler (an import fires from its own next
tick, project/beat.py), so its `last_run_at` and `total_run_count` stay empty: its last run is
the import's own, shown instead, and nothing here writes django-celery-beat's rows.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib import admin, messages
from django.db.models import Q, QuerySet
from django.db.models.functions import Coalesce
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django_celery_beat.admin import (
    ClockedScheduleAdmin,
    CrontabScheduleAdmin,
    IntervalScheduleAdmin,
    PeriodicTaskAdmin,
    SolarScheduleAdmin,
)
from django_celery_beat.models import (
    ClockedSchedule,
    CrontabSchedule,
    IntervalSchedule,
    PeriodicTask,
    SolarSchedule,
)

from .display import moment

LEFT_ALONE = (
    "Entries of importbeat were left alone: each follows its import (pause, resume or edit the "
    "import) or the settings (the maintenance jobs)."
)


def own_entries() -> Q:
    """importbeat's own entries: an import's, or a maintenance job of CELERY_BEAT_SCHEDULE. An
    entry an operator added for one of importbeat's tasks is theirs to edit and delete (it was
    judged by its task's name, and could then be neither, while beat ran it)."""
    return Q(scheduled_import__isnull=False) | Q(name__in=list(settings.CELERY_BEAT_SCHEDULE))


def is_own(task: PeriodicTask | None) -> bool:
    return task is not None and PeriodicTask.objects.filter(own_entries(), pk=task.pk).exists()


class ImportbeatPeriodicTaskAdmin(PeriodicTaskAdmin):
    list_display = ("name", "owning_import", "enabled", "scheduler", "last_run")
    readonly_fields = (*PeriodicTaskAdmin.readonly_fields, "last_run")

    def get_queryset(self, request: HttpRequest) -> QuerySet[PeriodicTask]:
        # Here, not in list_select_related, which Django's list leaves out when the queryset
        # joins already (django-celery-beat's joins its schedules): each entry read its import
        # and owner, 108 queries a page of 100 (ops hunt).
        return super().get_queryset(request).select_related("scheduled_import__owner")

    @admin.display(
        description="last run",
        ordering=Coalesce("scheduled_import__last_run_at", "last_run_at"),
    )
    def last_run(self, task: PeriodicTask) -> SafeString | str:
        imp = getattr(task, "scheduled_import", None)
        if imp is None:
            return moment(task.last_run_at)
        try:
            zone = imp.tzinfo
        except Exception:  # a zone no longer known to this host: say it in UTC
            zone = None
        return moment(imp.last_run_at, zone)

    def get_fieldsets(self, request: HttpRequest, obj=None):
        # An import's entry said "Last run: -" on its page too, however often the import ran
        # (`last_run` is an entry's own last run when it has no import).
        return [
            (name, {**options, "fields": _with_last_run(options["fields"])})
            for name, options in super().get_fieldsets(request, obj)
        ]

    @admin.display(description="import")
    def owning_import(self, task: PeriodicTask) -> SafeString | str:
        imp = getattr(task, "scheduled_import", None)
        if imp is None:
            return "maintenance" if is_own(task) else "-"
        url = reverse("admin:schedules_scheduledimport_change", args=[imp.pk])
        return format_html('<a href="{}">{}</a>', url, imp.name)

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return not is_own(obj) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return not is_own(obj) and super().has_delete_permission(request, obj)

    def _others(self, request: HttpRequest, queryset: QuerySet[PeriodicTask]):
        if queryset.filter(own_entries()).exists():
            self.message_user(request, LEFT_ALONE, messages.WARNING)
        return queryset.exclude(own_entries())

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[PeriodicTask]) -> None:
        super().delete_queryset(request, self._others(request, queryset))

    @admin.action(description="Enable selected tasks")
    def enable_tasks(self, request: HttpRequest, queryset: QuerySet[PeriodicTask]):
        return super().enable_tasks(request, self._others(request, queryset))

    @admin.action(description="Disable selected tasks")
    def disable_tasks(self, request: HttpRequest, queryset: QuerySet[PeriodicTask]):
        return super().disable_tasks(request, self._others(request, queryset))

    @admin.action(description="Toggle activity of selected tasks")
    def toggle_tasks(self, request: HttpRequest, queryset: QuerySet[PeriodicTask]):
        return super().toggle_tasks(request, self._others(request, queryset))

    @admin.action(description="Run selected tasks")
    def run_tasks(self, request: HttpRequest, queryset: QuerySet[PeriodicTask]):
        # An import's run goes through Run now (a logged manual run), not a bare dispatch.
        return super().run_tasks(request, self._others(request, queryset))


def _with_last_run(fields):
    return tuple("last_run" if field == "last_run_at" else field for field in fields)


admin.site.unregister(PeriodicTask)
admin.site.register(PeriodicTask, ImportbeatPeriodicTaskAdmin)


class ScheduleRowsOfOwnEntries:
    """A schedule row's admin: read-only while an entry of importbeat uses it. Its entries are
    not listed under it (an interval shared by 10,000 imports listed them all)."""

    inlines = ()

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return not _used_by_own(obj) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return not _used_by_own(obj) and super().has_delete_permission(request, obj)


def _used_by_own(row) -> bool:
    return row is not None and row.periodictask_set.filter(own_entries()).exists()


for _model, _admin in (
    (IntervalSchedule, IntervalScheduleAdmin),
    (CrontabSchedule, CrontabScheduleAdmin),
    (SolarSchedule, SolarScheduleAdmin),
    (ClockedSchedule, ClockedScheduleAdmin),
):
    admin.site.unregister(_model)
    admin.site.register(_model, type(_admin.__name__, (ScheduleRowsOfOwnEntries, _admin), {}))
