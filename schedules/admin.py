"""Django admin (SPEC section 6): imports with their schedule in words, last result, next run
and success rate; actions through schedules.services; recent runs inline; runs read-only with
their errors. Saving an import goes through ScheduledImport.save(), which re-syncs beat."""

from __future__ import annotations

import json

from auditlog.mixins import AuditlogHistoryAdminMixin
from django.contrib import admin, messages
from django.db.models import QuerySet, Subquery
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from . import attention, services
from .forms import ScheduledImportAdminForm
from .models import Dataset, ImportRun, NotificationDelivery, Record, ScheduledImport

RECENT_RUNS = 10
RUN_COLUMNS = (
    "status", "trigger", "queued_at", "duration_ms", "rows_read", "rows_inserted",
    "rows_updated", "rows_failed", "error_message",
)  # fmt: skip


class RecentRunsInline(admin.TabularInline):
    model = ImportRun
    fk_name = "scheduled_import"
    verbose_name_plural = f"recent runs (last {RECENT_RUNS})"
    fields = ("run_link", *RUN_COLUMNS)
    readonly_fields = fields
    extra = 0
    can_delete = False
    ordering = ("-queued_at", "-id")

    def get_queryset(self, request: HttpRequest) -> QuerySet[ImportRun]:
        # The inline's queryset is filtered by the parent after this: limit by the parent here.
        object_id = (
            request.resolver_match.kwargs.get("object_id") if request.resolver_match else None
        )
        recent = (
            ImportRun.objects.filter(scheduled_import_id=object_id)
            .order_by("-queued_at", "-id")
            .values("pk")[:RECENT_RUNS]
        )
        return super().get_queryset(request).filter(pk__in=Subquery(recent))

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    @admin.display(description="run")
    def run_link(self, run: ImportRun) -> str:
        url = reverse("admin:schedules_importrun_change", args=[run.pk])
        return format_html('<a href="{}">#{}</a>', url, run.pk)


@admin.register(ScheduledImport)
class ScheduledImportAdmin(AuditlogHistoryAdminMixin, admin.ModelAdmin):
    # An "Audit log" column: who changed each import, when, and what (schedules.history).
    show_auditlog_history_link = True
    form = ScheduledImportAdminForm
    list_display = (
        "name", "owner", "schedule", "status", "last_result", "next_run_at", "lateness", "success",
        "attention",
    )  # fmt: skip
    list_filter = ("status", "schedule_type", "last_run_status", "mode", "owner")
    search_fields = (
        "name", "description", "source_url", "owner__username", "dataset__name",
    )  # fmt: skip
    list_select_related = ("owner", "dataset")
    actions = ("run_now", "pause", "resume", "cancel")
    inlines = (RecentRunsInline,)
    readonly_fields = (
        "status", "schedule", "next_runs_display", "next_run_at", "total_runs",
        "successful_runs", "partial_runs", "failed_runs", "consecutive_failures", "success",
        "attention", "last_run_at", "last_run_status", "created_at", "updated_at", "lateness",
        "missed_ticks",
    )  # fmt: skip
    fieldsets = (
        (None, {"fields": ("owner", "name", "description", "status")}),
        ("Source", {"fields": ("source_url", "delimiter", "encoding", "has_header")}),
        ("Destination", {"fields": ("dataset", "key_column", "columns", "mode")}),
        (
            "Schedule",
            {
                "fields": (
                    "schedule_type",
                    "cron_expression",
                    "interval_seconds",
                    "timezone",
                    "schedule",
                    "next_runs_display",
                )
            },
        ),
        (
            "Policy",
            {
                "fields": (
                    "max_retries",
                    "retry_backoff_seconds",
                    "retry_backoff_max_seconds",
                    "timeout_seconds",
                    "overlap",
                    "catchup",
                    "alert_after_failures",
                    "callback_url",
                )
            },
        ),
        ("Notifications", {"fields": ("notify_on", "notify_channels")}),
        (
            "Counters",
            {
                "fields": (
                    "total_runs",
                    "successful_runs",
                    "partial_runs",
                    "failed_runs",
                    "consecutive_failures",
                    "success",
                    "attention",
                    "last_run_at",
                    "last_run_status",
                    "next_run_at",
                    "lateness",
                    "missed_ticks",
                    "created_at",
                    "updated_at",
                )
            },
        ),
    )

    @admin.display(description="schedule")
    def schedule(self, imp: ScheduledImport) -> str:
        try:
            return imp.schedule_description
        except Exception:  # a form being corrected holds an invalid schedule: show no words
            return "-"

    @admin.display(description="next runs")
    def next_runs_display(self, imp: ScheduledImport) -> str:
        if not imp.pk or imp.status != ScheduledImport.Status.ACTIVE:
            return "-"
        try:
            ticks = imp.next_runs(5)
        except Exception:  # as above: an invalid schedule has no next runs
            return "-"
        return format_html_join(", ", "{}", ((t.isoformat(),) for t in ticks))

    @admin.display(description="last result", ordering="last_run_at")
    def last_result(self, imp: ScheduledImport) -> str:
        if not imp.last_run_status:
            return "-"
        when = f" ({imp.last_run_at:%Y-%m-%d %H:%M})" if imp.last_run_at else ""
        return f"{imp.last_run_status}{when}"

    @admin.display(description="late")
    def lateness(self, imp: ScheduledImport) -> str:
        if not imp.pk or not imp.is_late():
            return "-"
        if imp.late_since is None:
            return f"overdue since {imp.next_run_at:%Y-%m-%d %H:%M} UTC"
        return f"late since {imp.late_since:%Y-%m-%d %H:%M} UTC ({imp.missed_ticks} missed ticks)"

    @admin.display(description="success rate")
    def success(self, imp: ScheduledImport) -> str:
        """Succeeded runs only; partial and failed ones are listed apart."""
        rate = imp.success_rate
        if rate is None:
            return "-"
        return (
            f"{rate:.0%} ({imp.successful_runs} succeeded, {imp.partial_runs} partial, "
            f"{imp.failed_runs} failed)"
        )

    @admin.display(description="needs attention")
    def attention(self, imp: ScheduledImport) -> str:
        return "; ".join(reason["text"] for reason in attention.reasons_for(imp)) or "-"

    @admin.action(description="Run now")
    def run_now(self, request: HttpRequest, queryset: QuerySet[ScheduledImport]) -> None:
        queued, busy = 0, []
        for imp in queryset:
            try:
                services.enqueue_run(imp, trigger=ImportRun.Trigger.MANUAL, user=request.user)
                queued += 1
            except services.RunAlreadyActive as conflict:
                busy.append(f"{imp.name} (run {conflict.run.pk} is {conflict.run.status})")
            except services.BrokerUnavailable:
                self.message_user(
                    request,
                    f"{imp.name}: the task queue is unavailable, no run was queued; try again.",
                    messages.ERROR,
                )
        if queued:
            self.message_user(request, f"Queued {queued} run(s).", messages.SUCCESS)
        if busy:
            self.message_user(request, "Already running: " + ", ".join(busy), messages.WARNING)

    @admin.action(description="Pause")
    def pause(self, request: HttpRequest, queryset: QuerySet[ScheduledImport]) -> None:
        self._each(request, queryset, services.pause_import, "Paused")

    @admin.action(description="Resume")
    def resume(self, request: HttpRequest, queryset: QuerySet[ScheduledImport]) -> None:
        self._each(request, queryset, services.resume_import, "Resumed")

    @admin.action(description="Cancel (stop scheduling, cancel queued and retrying runs)")
    def cancel(self, request: HttpRequest, queryset: QuerySet[ScheduledImport]) -> None:
        self._each(request, queryset, services.cancel_import, "Cancelled")

    def _each(self, request, queryset, change, verb: str) -> None:
        # One by one through services, so each import's beat entry follows (no bulk update).
        count = 0
        for imp in queryset:
            change(imp)
            count += 1
        self.message_user(request, f"{verb} {count} import(s).", messages.SUCCESS)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[ScheduledImport]) -> None:
        for imp in queryset:
            services.delete_import(imp)

    def delete_model(self, request: HttpRequest, obj: ScheduledImport) -> None:
        services.delete_import(obj)


@admin.register(ImportRun)
class ImportRunAdmin(admin.ModelAdmin):
    list_display = (
        "id", "scheduled_import", "owner", "trigger", "status", "queued_at", "duration_ms",
        "rows_read", "rows_failed",
    )  # fmt: skip
    list_filter = ("status", "trigger", "queued_at")
    search_fields = ("scheduled_import__name", "scheduled_import__owner__username", "error_message")
    list_select_related = ("scheduled_import__owner",)
    date_hierarchy = "queued_at"
    readonly_fields = ("errors", "row_errors", "attempt_failures", "traceback")
    fieldsets = (
        (
            None,
            {"fields": ("scheduled_import", "trigger", "triggered_by", "scheduled_for", "status")},
        ),
        (
            "Timing",
            {
                "fields": (
                    "queued_at",
                    "started_at",
                    "finished_at",
                    "duration_ms",
                    "attempts",
                    "worker",
                    "celery_task_id",
                    "rows_committed_at",
                    "file_digest",
                    "source_etag",
                    "source_last_modified",
                )
            },
        ),
        (
            "Counts",
            {
                "fields": (
                    "rows_read",
                    "rows_inserted",
                    "rows_updated",
                    "rows_unchanged",
                    "rows_deleted",
                    "rows_failed",
                    "bytes_read",
                    "bytes_total",
                )
            },
        ),
        ("Errors", {"fields": ("errors", "row_errors", "attempt_failures", "traceback")}),
    )

    @admin.display(description="owner")
    def owner(self, run: ImportRun) -> str:
        return run.scheduled_import.owner.get_username()

    actions = ("cancel_runs", "retry_runs")

    @admin.action(description="Cancel (a running one stops at its next safe point)")
    def cancel_runs(self, request: HttpRequest, queryset: QuerySet[ImportRun]) -> None:
        done, refused = 0, []
        for run in queryset:
            try:
                services.cancel_run(run, user=request.user)
                done += 1
            except services.RunNotActionable as error:
                refused.append(str(error))
        self._report(request, f"Cancelled {done} run(s).", done, refused)

    @admin.action(description="Retry now (failed or timed-out runs)")
    def retry_runs(self, request: HttpRequest, queryset: QuerySet[ImportRun]) -> None:
        done, refused = 0, []
        for run in queryset.select_related("scheduled_import"):
            try:
                services.retry_run(run, user=request.user, trigger=ImportRun.Trigger.MANUAL)
                done += 1
            except services.RunAlreadyActive as conflict:
                refused.append(f"run {run.pk}: {conflict}")
            except (services.RunNotActionable, services.BrokerUnavailable) as error:
                refused.append(f"run {run.pk}: {error}")
        self._report(request, f"Queued {done} retry run(s).", done, refused)

    def _report(self, request: HttpRequest, done_text: str, done: int, refused: list[str]) -> None:
        if done:
            self.message_user(request, done_text, messages.SUCCESS)
        if refused:
            self.message_user(request, "Not done: " + "; ".join(refused), messages.WARNING)

    @admin.display(description="error")
    def errors(self, run: ImportRun) -> str:
        if not run.error_message and not run.error_details:
            return "-"
        details = {k: v for k, v in (run.error_details or {}).items() if k != "traceback"}
        return format_html(
            "<strong>{}</strong><pre>{}</pre>",
            run.error_message or "",
            json.dumps(details, indent=2, default=str),
        )

    @admin.display(description="traceback")
    def traceback(self, run: ImportRun) -> str:
        """An unexpected error's traceback, kept on the run (the worker's log may be gone)."""
        text = (run.error_details or {}).get("traceback")
        return format_html("<pre>{}</pre>", text) if text else "-"

    @admin.display(description="row errors")
    def row_errors(self, run: ImportRun) -> str:
        rows = (run.error_details or {}).get("rows") or []
        if not rows:
            return "-"
        body = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (r.get("line", ""), r.get("column", ""), r.get("value", ""), r.get("reason", ""))
                for r in rows
                if isinstance(r, dict)
            ),
        )
        return format_html(
            "<table><tr><th>line</th><th>column</th><th>value</th><th>reason</th></tr>{}</table>",
            body,
        )

    @admin.display(description="attempts")
    def attempt_failures(self, run: ImportRun) -> str:
        attempts = (run.error_details or {}).get("attempts") or []
        if not attempts:
            return "-"
        return format_html_join(
            "",
            "<div>attempt {}: {} ({})</div>",
            ((a.get("attempt", ""), a.get("error", ""), a.get("at", "")) for a in attempts
             if isinstance(a, dict)),
        )  # fmt: skip

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        # The execution log is written by the workers only; the admin shows it.
        return False


@admin.register(Dataset)
class DatasetAdmin(admin.ModelAdmin):
    list_display = ("name", "owner", "created_at")
    list_filter = ("owner",)
    search_fields = ("name", "owner__username")
    list_select_related = ("owner",)


@admin.register(Record)
class RecordAdmin(admin.ModelAdmin):
    list_display = ("key", "dataset", "updated_at")
    search_fields = ("key",)
    list_select_related = ("dataset",)
    raw_id_fields = ("dataset",)
    # Datasets run to millions of rows: never count them for the changelist.
    show_full_result_count = False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Records come from imports; one added by hand would be overwritten or deleted by them.
        return False

    def delete_model(self, request: HttpRequest, obj: Record) -> None:
        services.delete_records(Record.objects.filter(pk=obj.pk))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Record]) -> None:
        services.delete_records(queryset)


@admin.register(NotificationDelivery)
class NotificationDeliveryAdmin(admin.ModelAdmin):
    """The notifications sent (schedules.notifications) and how each delivery went; read-only:
    the workers write it."""

    list_display = (
        "id", "scheduled_import", "event", "channel", "status", "attempts", "response_status",
        "created_at",
    )  # fmt: skip
    list_filter = ("status", "event", "channel")
    search_fields = ("scheduled_import__name", "scheduled_import__owner__username", "target")
    list_select_related = ("scheduled_import",)
    raw_id_fields = ("scheduled_import", "run")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False
