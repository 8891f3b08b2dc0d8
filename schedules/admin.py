"""Django admin (SPEC section 6): imports with their schedule in words, last result, next run
and success rate; actions through schedules.services; recent runs inline; runs read-only with
their errors. Saving an import goes through ScheduledImport.save(), which re-syncs beat."""

from __future__ import annotations

from auditlog.mixins import AuditlogHistoryAdminMixin
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import OuterRef, Q, QuerySet, Subquery
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.dateparse import parse_datetime
from django.utils.decorators import method_decorator
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.text import smart_split, unescape_string_literal
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_POST

from . import (
    admin_beat,  # noqa: F401 (registers the Periodic tasks admin)
    admin_users,  # noqa: F401 (registers the users' admin)
    attention,
    exact_json,
    manual_runs,
    services,
    statuses,
)
from .admin_lists import ListAtScale
from .display import badge, duration, moment, schedule_words
from .forms import SECRET_FIELDS, ScheduledImportAdminForm
from .models import Dataset, ImportRun, NotificationDelivery, Record, ScheduledImport
from .overdue_next_runs import ListedNextRun


class AdminMedia:
    # Badges, wrapped errors and the object actions' buttons (schedules/static/schedules).
    css = {"all": ["schedules/admin.css"]}


Status = ScheduledImport.Status
RECENT_RUNS = 10
# The imports a list action left as they were, named in its message; the rest are counted.
LEFT_NAMED = 20


def _named(left: list[tuple[ScheduledImport, str]]) -> str:
    """The imports a list action left, LEFT_NAMED of them named with why, the rest counted."""
    named = ", ".join(f"{imp.name} ({why})" if why else imp.name for imp, why in left[:LEFT_NAMED])
    more = len(left) - LEFT_NAMED
    return named + (f" and {more} more" if more > 0 else "")


# The runs one Cancel or Retry now acts on, each through its service call (about 13 ms): the
# rest of a larger selection is counted and left for the action's next choice.
RUNS_PER_ACTION = 1000
DATA_PREVIEW_CHARS = 120
ERROR_PREVIEW_CHARS = 200
# Few enough to fit beside the admin's sidebar; a run's page has the rest.
RUN_COLUMNS = (
    "status_badge",
    "trigger",
    "queued",
    "took",
    "rows_read",
    "rows_failed",
    "error_short",
)


class RunDisplay:
    """A run's status, times (in its import's timezone) and duration, for the run pages and
    the import's inline alike."""

    @admin.display(description="status", ordering="status")
    def status_badge(self, run: ImportRun) -> SafeString | str:
        return badge(run.status)

    @admin.display(description="queued", ordering="queued_at")
    def queued(self, run: ImportRun) -> SafeString | str:
        return moment(run.queued_at, run.scheduled_import.tzinfo)

    @admin.display(description="duration", ordering="duration_ms")
    def took(self, run: ImportRun) -> str:
        return duration(run.duration_ms)

    @admin.display(description="error")
    def error_short(self, run: ImportRun) -> SafeString | str:
        # A long URL in an error must wrap, not widen the page; the run's page has it whole.
        text = run.error_message
        if len(text) > ERROR_PREVIEW_CHARS:
            text = text[: ERROR_PREVIEW_CHARS - 1] + "…"
        return format_html('<span class="ib-wrap">{}</span>', text) if text else "-"


class RecentRunsInline(RunDisplay, admin.TabularInline):
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


# A list filter offers its choices while they are this few; past that it is not offered (every
# user, or every dataset, was listed on each page of the list: 1.5 MB and 1 s at 20,000
# datasets), and a link with its parameter (a dataset's page) still filters.
FILTER_CHOICES_MAX = 200


class OwnerFilter(admin.SimpleListFilter):
    """By owner, while the owners are few enough to list (FILTER_CHOICES_MAX)."""

    title = "owner"
    parameter_name = "owner__id__exact"

    def lookups(self, request: HttpRequest, model_admin) -> list[tuple[int, str]]:
        users = get_user_model().objects.order_by("username")[: FILTER_CHOICES_MAX + 1]
        choices = [(user.pk, user.get_username()) for user in users]
        return choices if len(choices) <= FILTER_CHOICES_MAX else []

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if not self.value():
            return queryset
        if not (self.value().isascii() and self.value().isdigit()):
            raise admin.options.IncorrectLookupParameters("an owner is named by their id")
        return queryset.filter(owner_id=self.value())


# Columns an import's form writes from what was typed, changed or not (the credential's).
OWN_FORM_COLUMNS = ("credential_", "sftp_")


@admin.register(ScheduledImport)
class ScheduledImportAdmin(ListAtScale, AuditlogHistoryAdminMixin, admin.ModelAdmin):
    # An "Audit log" column: who changed each import, when, and what (schedules.history).
    show_auditlog_history_link = True
    form = ScheduledImportAdminForm
    list_display = (
        "name", "owner", "schedule", "status_badge", "last_result", "next_run", "lateness",
        "success", "attention",
    )  # fmt: skip
    list_filter = ("status", "schedule_type", "last_run_status", "mode", OwnerFilter)
    search_fields = (
        "name", "description", "source_url", "owner__username", "dataset__name",
    )  # fmt: skip
    list_select_related = ("owner", "dataset")
    # The owner found by a search of the users, not a <select> of every user (10,000 users
    # made the import's page 4 s and 1.4 MB with the datasets' own).
    # The dataset likewise: a <select> of every user's datasets (20,000 made the page 4 s).
    autocomplete_fields = ("owner", "dataset")
    actions = ("run_now", "pause", "resume", "cancel")
    inlines = (RecentRunsInline,)

    def save_model(self, request: HttpRequest, obj: ScheduledImport, form, change: bool) -> None:
        """An edit writes what its form changed, onto the import as it is now (locked): a
        pause (or any edit) committed since the page was posted was written back as read, and
        the import fired on after a pause answered 200. The credential's columns are the form's
        own (clean() has encrypted what was typed)."""
        if not change:
            return super().save_model(request, obj, form, change)
        keys = {"key_column", "mode", "dataset"} & set(form.changed_data)
        with transaction.atomic():
            now = services.as_it_is_now(obj, datasets=[obj.dataset_id] if keys else None)
            for field in ScheduledImport._meta.concrete_fields:
                if field.name in form.changed_data or field.name.startswith(OWN_FORM_COLUMNS):
                    continue
                if field.name in form.fields and (
                    getattr(obj, field.attname) != form.initial.get(field.name)
                ):
                    continue  # set by the model's clean() (the other schedule's field cleared)
                setattr(obj, field.attname, getattr(now, field.attname))
            obj.save()
        return None

    def auditlog_history_view(self, request: HttpRequest, object_id: str, extra_context=None):
        # django-auditlog's page raised for an import that is not there (deleted, or never
        # was): a 500. Django's own history page sends the user on, saying so; this does too.
        if self.get_object(request, unquote(object_id)) is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        return super().auditlog_history_view(request, object_id, extra_context)

    # An error while a credential is being saved (the server error mail to ADMINS, DEBUG's
    # error page) lists the request's POST: without the secret parts, as Django's own
    # password forms do.
    @method_decorator(sensitive_post_parameters(*SECRET_FIELDS))
    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict | None = None,
    ) -> HttpResponse:
        return super().changeform_view(request, object_id, form_url, extra_context)

    Media = AdminMedia
    # Run now, Pause / Resume and Test source as buttons on the import's own page.
    change_form_template = "admin/schedules/scheduledimport/change_form.html"
    readonly_fields = (
        "status_badge", "schedule", "next_runs_display", "next_run", "total_runs",
        "successful_runs", "partial_runs", "failed_runs", "consecutive_failures", "success",
        "attention", "last_run", "last_run_status", "last_success", "created_at", "updated_at",
        "lateness",
        "missed_ticks", "credential_set", "host_key", "offered_host_key",
    )  # fmt: skip
    fieldsets = (
        (None, {"fields": ("owner", "name", "description", "status_badge", "version")}),
        (
            "Source",
            {
                "fields": (
                    "source_url",
                    "source_member",
                    "move_processed",
                    "delimiter",
                    "encoding",
                    "has_header",
                )
            },
        ),
        (
            "Source credential and host key",
            {
                "fields": (
                    "credential_set",
                    "credential",
                    "credential_username",
                    "credential_password",
                    "credential_private_key",
                    "host_key",
                    "offered_host_key",
                )
            },
        ),
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
                    "last_run",
                    "last_run_status",
                    "last_success",
                    "next_run",
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
            return schedule_words(imp)  # kept per rule: a page of 100 imports shares a few
        except Exception:  # a form being corrected holds an invalid schedule: show no words
            return "-"

    @admin.display(description="next runs")
    def next_runs_display(self, imp: ScheduledImport) -> str:
        if not imp.pk or imp.status != ScheduledImport.Status.ACTIVE:
            return "-"
        try:
            ticks = imp.next_runs(5)
            zone = imp.tzinfo
        except Exception:  # as above: an invalid schedule has no next runs
            return "-"
        items = format_html_join("", "<li>{}</li>", ((moment(t, zone),) for t in ticks))
        return format_html('<ol class="ib-next-runs">{}</ol>', items)

    @admin.display(description="status", ordering="status")
    def status_badge(self, imp: ScheduledImport) -> SafeString | str:
        return badge(imp.status)

    # Sorted by the run it shows, not by the column: in an outage an import whose missed 10:00
    # beat skips to 13:00 came before one due at 12:40.
    @admin.display(description="next run", ordering=ListedNextRun())
    def next_run(self, imp: ScheduledImport) -> SafeString | str:
        # The first of the next runs, never a tick older than the grace period (the column
        # keeps beat's place in an outage; "late" says it).
        return moment(imp.next_run_listed(), _zone(imp))

    @admin.display(description="last run", ordering="last_run_at")
    def last_run(self, imp: ScheduledImport) -> SafeString | str:
        return moment(imp.last_run_at, _zone(imp))

    @admin.display(description="last success", ordering="last_success_at")
    def last_success(self, imp: ScheduledImport) -> SafeString | str:
        return moment(imp.last_success_at, _zone(imp))

    @admin.display(description="last result", ordering="last_run_at")
    def last_result(self, imp: ScheduledImport) -> SafeString | str:
        if not imp.last_run_status:
            return "-"
        return format_html("{} {}", badge(imp.last_run_status), self.last_run(imp))

    @admin.display(description="late")
    def lateness(self, imp: ScheduledImport) -> str:
        if not imp.pk or not imp.is_late():
            return "-"
        if imp.late_since is None:
            return f"overdue since {imp.next_run_at:%Y-%m-%d %H:%M} UTC"
        missed = f"{imp.missed_while_late} ticks missed since, {imp.missed_ticks} in all"
        return f"late since {imp.late_since:%Y-%m-%d %H:%M} UTC ({missed})"

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

    # Each acts on the import: staff who may only view imports are not offered them (they could
    # run, pause and cancel imports through the list, while the page's buttons refused them).
    @admin.action(description="Run now", permissions=["change"])
    def run_now(self, request: HttpRequest, queryset: QuerySet[ScheduledImport]) -> None:
        # The whole selection a batch at a time (one by one, 300 imports took 3.1 s).
        runs = manual_runs.run_now(queryset.values_list("pk", flat=True), request.user)
        if runs.queued:
            self.message_user(request, f"Queued {len(runs.queued)} run(s).", messages.SUCCESS)
        if runs.busy:
            self.message_user(request, f"Already running: {_named(runs.busy)}", messages.WARNING)
        if runs.owner_inactive:
            names = _named([(imp, "") for imp in runs.owner_inactive])
            self.message_user(
                request, f"{names}: not queued, {services.OWNER_INACTIVE}.", messages.ERROR
            )
        if runs.unavailable is not None:
            # Read on one import's page too (its Run now button): no "of the selection".
            not_run = "1 import was" if runs.not_tried == 1 else f"{runs.not_tried} imports were"
            self.message_user(
                request, f"{runs.unavailable}: {not_run} not run; try again.", messages.ERROR
            )

    @admin.action(description="Pause", permissions=["change"])
    def pause(self, request: HttpRequest, queryset: QuerySet[ScheduledImport]) -> None:
        self._change(request, queryset, Status.PAUSED, "Paused", (Status.ACTIVE,))

    @admin.action(description="Resume", permissions=["change"])
    def resume(self, request: HttpRequest, queryset: QuerySet[ScheduledImport]) -> None:
        self._change(request, queryset, Status.ACTIVE, "Resumed", (Status.PAUSED, Status.CANCELLED))

    @admin.action(
        description="Cancel (stop scheduling, cancel queued and retrying runs)",
        permissions=["change"],
    )
    def cancel(self, request: HttpRequest, queryset: QuerySet[ScheduledImport]) -> None:
        self._change(
            request, queryset, Status.CANCELLED, "Cancelled", (Status.ACTIVE, Status.PAUSED)
        )

    def _change(self, request, queryset, status: str, verb: str, from_statuses: tuple) -> None:
        # The whole selection in a few statements, beat entries and history included (one by
        # one, 10,000 imports took 85 s). An import the action does not apply to is left as it
        # is and named: "Paused 3" was said of two, and pausing a cancelled import paused it.
        changes = statuses.change_statuses(
            queryset.values_list("pk", flat=True), status, from_statuses=from_statuses
        )
        self.message_user(request, f"{verb} {len(changes.changed)} import(s).", messages.SUCCESS)
        if changes.left:
            self.message_user(
                request, f"Left as they were: {_named(changes.left)}", messages.WARNING
            )

    # --- the same actions as buttons on one import's page -------------------------------

    # --- source credential and SFTP host key (never the secret) -------------------------

    @admin.display(description="credential")
    def credential_set(self, imp: ScheduledImport) -> str:
        if not imp.credential_kind:
            return "none"
        return f"{imp.get_credential_kind_display()}: set (for {imp.credential_origin})"

    @admin.display(description="pinned host key")
    def host_key(self, imp: ScheduledImport) -> str:
        return imp.host_key_fingerprint or "none yet (the first check or run pins it)"

    @admin.display(description="new host key offered")
    def offered_host_key(self, imp: ScheduledImport) -> str:
        if not imp.sftp_offered_host_key:
            return "none"
        return (
            f"{imp.offered_host_key_fingerprint}: runs fail until it is accepted "
            f"(the Accept new host key button)"
        )

    def accept_host_key_view(self, request: HttpRequest, object_id: str) -> HttpResponseRedirect:
        from .host_keys import NoOfferedKey, accept_offered

        imp = self._one(request, object_id)
        try:
            imp = accept_offered(imp, request.user)
        except NoOfferedKey as refused:
            self.message_user(request, str(refused), messages.ERROR)
        else:
            self.message_user(
                request,
                f"The host key {imp.host_key_fingerprint} is now trusted.",
                messages.SUCCESS,
            )
        return self._back(imp)

    def get_urls(self):
        views = {
            "run_now": self._button(self.run_now),
            "pause": self._button(self.pause),
            "resume": self._button(self.resume),
            "test_source": self.test_source_view,
            "accept_host_key": self.accept_host_key_view,
        }
        own = [
            path(
                f"<path:object_id>/{name}/",
                self.admin_site.admin_view(require_POST(view)),
                name=f"schedules_scheduledimport_{name}",
            )
            for name, view in views.items()
        ]
        return own + super().get_urls()

    def _one(self, request: HttpRequest, object_id: str) -> ScheduledImport:
        if not (object_id.isascii() and object_id.isdigit()):
            raise Http404("no such import")  # (the id's lookup raised ValueError: a 500)
        imp = get_object_or_404(ScheduledImport, pk=object_id)
        if not self.has_change_permission(request, imp):
            raise PermissionDenied
        return imp

    def _back(self, imp: ScheduledImport) -> HttpResponseRedirect:
        return HttpResponseRedirect(
            reverse("admin:schedules_scheduledimport_change", args=[imp.pk])
        )

    def _button(self, action):
        """A list action, as a view acting on the one import whose page the button is on."""

        def view(request: HttpRequest, object_id: str) -> HttpResponseRedirect:
            imp = self._one(request, object_id)
            action(request, ScheduledImport.objects.filter(pk=imp.pk))
            return self._back(imp)

        return view

    def test_source_view(self, request: HttpRequest, object_id: str) -> HttpResponseRedirect:
        from .source_check import check_source

        imp = self._one(request, object_id)
        result = check_source(imp, by=request.user.pk)
        level = messages.SUCCESS if result.ok else messages.ERROR
        self.message_user(request, result.summary(), level)
        return self._back(imp)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[ScheduledImport]) -> None:
        for imp in queryset:
            services.delete_import(imp)

    def delete_model(self, request: HttpRequest, obj: ScheduledImport) -> None:
        services.delete_import(obj)


RUN_FIELDS = (
    "import_link", "trigger", "triggered_by", "when_scheduled", "queued", "started", "finished",
    "took", "attempts", "worker", "celery_task_id", "rows_committed_at",
)  # fmt: skip
COUNT_FIELDS = (
    "rows_read", "rows_inserted", "rows_updated", "rows_unchanged", "rows_deleted",
    "rows_failed", "bytes_read", "bytes_total",
)  # fmt: skip


def _zone(imp: ScheduledImport):
    try:
        return imp.tzinfo
    except Exception:  # a timezone being corrected in the form: show UTC
        return None


@admin.register(ImportRun)
class ImportRunAdmin(ListAtScale, RunDisplay, admin.ModelAdmin):
    list_display = (
        "id", "scheduled_import", "owner", "trigger", "status_badge", "queued", "took",
        "rows_read", "rows_failed",
    )  # fmt: skip
    # The sorts an index serves. By trigger, status, duration or rows, PostgreSQL read and
    # sorted every run of a year to show a page of them (2.4 to 3.6 s at a million runs).
    sortable_by = ("id", "scheduled_import", "queued")
    list_filter = ("status", "trigger", "queued_at")
    search_fields = ("scheduled_import__name", "scheduled_import__owner__username", "error_message")
    list_select_related = ("scheduled_import__owner",)
    Media = AdminMedia
    # Led by what happened: the outcome and its error first, the bookkeeping after.
    readonly_fields = (
        "outcome", "errors", "row_errors", "attempt_failures", "import_link", "when_scheduled",
        "queued", "started", "finished", "took", "traceback",
    )  # fmt: skip
    fieldsets = (
        (
            "Outcome",
            {"fields": ("outcome", "errors", "row_errors", "attempt_failures", "traceback")},
        ),
        ("Run", {"fields": RUN_FIELDS}),
        ("Counts", {"fields": COUNT_FIELDS}),
        (
            "Source file",
            {"fields": ("source_file", "file_digest", "source_etag", "source_last_modified")},
        ),
    )

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[ImportRun], search_term: str
    ) -> tuple[QuerySet[ImportRun], bool]:
        """Runs of the imports whose name or owner has each word, or whose error has it.

        Django's own search joined every run to its import and owner and OR'ed the three
        fields: PostgreSQL read every run of a year to answer it (6 s at a million). The
        imports are found first, then their runs through the run history index.
        """
        for word in smart_split(search_term):
            if word[:1] in "\"'" and word[-1:] == word[:1]:
                word = unescape_string_literal(word)
            imports = ScheduledImport.objects.filter(
                Q(name__icontains=word) | Q(owner__username__icontains=word)
            ).values("pk")
            queryset = queryset.filter(
                Q(scheduled_import__in=imports) | Q(error_message__icontains=word)
            )
        return queryset, False

    @admin.display(description="owner")
    def owner(self, run: ImportRun) -> str:
        return run.scheduled_import.owner.get_username()

    actions = ("cancel_runs", "retry_runs")

    def delete_model(self, request: HttpRequest, obj: ImportRun) -> None:
        services.delete_runs(ImportRun.objects.filter(pk=obj.pk))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[ImportRun]) -> None:
        # A few statements however many runs (all of a year's, chosen across the pages).
        services.delete_runs(queryset)

    def has_act_permission(self, request: HttpRequest) -> bool:
        """Cancelling or retrying a run acts on its import: the import's change permission."""
        return request.user.has_perm("schedules.change_scheduledimport")

    @admin.action(
        description="Cancel (a running one stops at its next safe point)", permissions=["act"]
    )
    def cancel_runs(self, request: HttpRequest, queryset: QuerySet[ImportRun]) -> None:
        def cancel(run: ImportRun) -> None:
            services.cancel_run(run, user=request.user)

        self._act_on_runs(
            request,
            queryset,
            # A running run asked to stop already stays running: chosen again, the first ones of
            # a large selection were asked again at every choice, the rest never.
            Q(status__in=services.WAITING_STATUSES)
            | Q(status=ImportRun.Status.RUNNING, cancel_requested_at__isnull=True),
            cancel,
            done="Cancelled {} run(s).",
            verb="cancelled",
            only="Only a queued or retrying run, or a running one not asked to stop yet, can be "
            "cancelled.",
        )

    @admin.action(description="Retry now (failed or timed-out runs)", permissions=["act"])
    def retry_runs(self, request: HttpRequest, queryset: QuerySet[ImportRun]) -> None:
        def retry(run: ImportRun) -> None:
            services.retry_run(run, user=request.user, trigger=ImportRun.Trigger.MANUAL)

        retried_as = services.retries_that_count(ImportRun.objects.filter(retry_of=OuterRef("pk")))
        self._act_on_runs(
            request,
            queryset.select_related("scheduled_import").annotate(
                retried_as=Subquery(retried_as.values("pk")[:1])
            ),
            # A retried run stays failed: chosen again, the first ones of a large selection
            # were retried at every choice, the rest never (services.retry_run refuses it).
            Q(status__in=ImportRun.FAILED_STATUSES) & Q(retried_as__isnull=True),
            retry,
            done="Queued {} retry run(s).",
            verb="retried",
            only="Only a failed or timed-out run not retried already can be retried.",
            why_left=lambda pk, status, row: (
                services.retried_already(pk, row["retried_as"])
                if row["retried_as"] is not None
                else f"run {pk} is {status}"
            ),
            left_columns=("retried_as",),
        )

    def _act_on_runs(
        self,
        request,
        queryset,
        actionable: Q,
        act,
        *,
        done: str,
        verb: str,
        only: str,
        why_left=None,
        left_columns: tuple[str, ...] = (),
    ) -> None:
        """Act on the selected runs the action applies to, at most RUNS_PER_ACTION of them; the
        others are counted and the first LEFT_NAMED named.

        Each run took a service call and each refusal a clause: "select all" of 2,000 queued
        and 2,000 succeeded runs took 25 s and said 160 KB, and a year's runs would have held
        the request for hours. The statuses are told apart in SQL; the service still decides
        each run acted on (its status may have changed since, its import may be busy)."""
        why_left = why_left or (lambda pk, status, _row: f"run {pk} is {status}")
        others = queryset.exclude(actionable)
        left = [
            why_left(row["pk"], row["status"], row)
            for row in others.values("pk", "status", *left_columns)[:LEFT_NAMED]
        ]
        left_count = others.count() if len(left) == LEFT_NAMED else len(left)
        chosen = list(queryset.filter(actionable)[: RUNS_PER_ACTION + 1])
        waiting = 0
        if len(chosen) > RUNS_PER_ACTION:
            waiting = queryset.filter(actionable).count() - RUNS_PER_ACTION
            chosen = chosen[:RUNS_PER_ACTION]
        acted, refused = 0, []
        for run in chosen:
            try:
                act(run)
                acted += 1
            except services.RunAlreadyActive as conflict:
                refused.append(f"run {run.pk}: {conflict}")
            except services.RunNotActionable as error:
                refused.append(str(error))  # (it names the run: "run 1 is succeeded: ...")
            except services.BrokerUnavailable as error:
                refused.append(f"run {run.pk}: {error}")
            except services.OwnerInactive:
                refused.append(f"run {run.pk}: {services.OWNER_INACTIVE}")
        if acted:
            self.message_user(request, done.format(acted), messages.SUCCESS)
        if waiting:
            self.message_user(
                request,
                f"{waiting} more run(s) of the selection are still to be {verb}: one action "
                f"takes {RUNS_PER_ACTION} at most, so choose it again for the rest.",
                messages.WARNING,
            )
        named = (refused + left)[:LEFT_NAMED]
        if named:
            more = len(refused) + left_count - len(named)
            text = "Not done: " + "; ".join(named) + (f"; and {more} more" if more > 0 else "")
            self.message_user(request, text + (f". {only}" if left_count else ""), messages.WARNING)

    @admin.display(description="outcome")
    def outcome(self, run: ImportRun) -> SafeString:
        rows = (
            f"{run.rows_read} rows read: {run.rows_inserted} inserted, {run.rows_updated} "
            f"updated, {run.rows_unchanged} unchanged, {run.rows_deleted} deleted, "
            f"{run.rows_failed} failed"
        )
        ran = run.duration_ms is not None and run.started_at is not None
        took = f"in {duration(run.duration_ms)}" if ran else ""
        attempts = f"attempt {run.attempts}" if run.attempts > 1 else ""
        facts = ", ".join(part for part in (took, attempts) if part)
        return format_html(
            '<div class="ib-outcome">{} <span>{}</span><div class="ib-rows">{}</div></div>',
            badge(run.status),
            facts,
            rows,
        )

    @admin.display(description="error")
    def errors(self, run: ImportRun) -> SafeString | str:
        # A queued run reconciliation sent again says so here: it has no attempt to say it on.
        sent_again = _attempt_notes(
            run.error_details or {}, run.scheduled_import.tzinfo, (services.RUN_SENT_AGAIN,)
        )
        if not run.error_message:
            return sent_again or "-"
        return format_html('<pre class="ib-error">{}</pre>{}', run.error_message, sent_again)

    @admin.display(description="traceback")
    def traceback(self, run: ImportRun) -> str:
        """An unexpected error's traceback, kept on the run (the worker's log may be gone)."""
        text = (run.error_details or {}).get("traceback")
        return format_html('<pre class="ib-error">{}</pre>', text) if text else "-"

    @admin.display(description="row errors")
    def row_errors(self, run: ImportRun) -> SafeString | str:
        rows = [r for r in (run.error_details or {}).get("rows") or [] if isinstance(r, dict)]
        if not rows:
            return "-"
        body = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td></tr>",
            ((r.get("line", ""), _blank(r.get("column")), _blank(r.get("value")),
              r.get("reason", "")) for r in rows),
        )  # fmt: skip
        more = ""
        if run.rows_failed > len(rows):
            more = f"the first {len(rows)} of {run.rows_failed}"
        return format_html(
            '<table class="ib-row-errors"><caption>{}</caption><tr><th>line</th><th>column</th>'
            "<th>value</th><th>reason</th></tr>{}</table>",
            more,
            body,
        )

    @admin.display(description="failed attempts")
    def attempt_failures(self, run: ImportRun) -> SafeString | str:
        attempts = [
            a for a in (run.error_details or {}).get("attempts") or [] if isinstance(a, dict)
        ]
        if not attempts:
            return "-"
        zone = run.scheduled_import.tzinfo
        return format_html(
            '<ol class="ib-attempts">{}</ol>',
            format_html_join(
                "",
                '<li value="{}">{} <pre class="ib-error">{}</pre>{}</li>',
                ((a.get("attempt") or "", _moment_text(a.get("at"), zone), a.get("error", ""),
                  _attempt_notes(a, zone)) for a in attempts),
            ),
        )  # fmt: skip

    @admin.display(description="import")
    def import_link(self, run: ImportRun) -> SafeString:
        imp = run.scheduled_import
        url = reverse("admin:schedules_scheduledimport_change", args=[imp.pk])
        return format_html('<a href="{}">{}</a> ({})', url, imp.name, imp.owner.get_username())

    @admin.display(description="scheduled for")
    def when_scheduled(self, run: ImportRun) -> SafeString | str:
        return moment(run.scheduled_for, run.scheduled_import.tzinfo)

    @admin.display(description="started")
    def started(self, run: ImportRun) -> SafeString | str:
        return moment(run.started_at, run.scheduled_import.tzinfo)

    @admin.display(description="finished")
    def finished(self, run: ImportRun) -> SafeString | str:
        return moment(run.finished_at, run.scheduled_import.tzinfo)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        # The execution log is written by the workers only; the admin shows it.
        return False


def _blank(value: object) -> object:
    # A row error without a column or value (a row with the wrong number of fields) shows
    # nothing there, not "None".
    return "" if value is None else value


def _moment_text(value: str | None, zone) -> SafeString | str:
    parsed = parse_datetime(value) if isinstance(value, str) else None
    return moment(parsed, zone) if parsed else (value or "")


@admin.register(Dataset)
class DatasetAdmin(ListAtScale, admin.ModelAdmin):
    list_display = ("name", "owner", "record_count", "key_column", "created_at")
    list_filter = (OwnerFilter,)
    search_fields = ("name", "owner__username")
    list_select_related = ("owner",)
    raw_id_fields = ("owner",)
    # The file applied last is the engine's own note (the "same file again" shortcut): a hand
    # edit made the next run skip a changed dataset. Its form listed every run of every user in
    # a <select>: 3 s and 1 MB at 20,000 runs.
    readonly_fields = ("applied_digest", "applied_run")

    def get_readonly_fields(self, request: HttpRequest, obj: Dataset | None = None) -> tuple:
        # A dataset's owner is its imports' owner: changed here, the old owner's imports went on
        # writing into the new owner's dataset, which the old owner could no longer see.
        return (*self.readonly_fields, "owner") if obj is not None else self.readonly_fields

    def get_search_results(self, request: HttpRequest, queryset, search_term: str):
        # The import form's dataset field searches here (its autocomplete), labelling each
        # result with its owner: names are unique per owner only.
        queryset, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        return queryset.select_related("owner"), may_have_duplicates

    @staticmethod
    def autocomplete_label(dataset: Dataset) -> str:
        return f"{dataset.owner} / {dataset.name}"

    def delete_model(self, request: HttpRequest, obj: Dataset) -> None:
        # As the API deletes one: locked against a merge, refused while an import writes to it.
        try:
            services.delete_dataset(obj)
        except services.DatasetInUse as in_use:
            self.message_user(request, str(in_use), messages.ERROR)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Dataset]) -> None:
        for dataset in queryset:
            self.delete_model(request, dataset)


class DatasetFilter(admin.SimpleListFilter):
    """Records of one dataset; datasets named by owner too, as names are unique per owner."""

    title = "dataset"
    parameter_name = "dataset__id__exact"

    def lookups(self, request: HttpRequest, model_admin) -> list[tuple[int, str]]:
        datasets = Dataset.objects.select_related("owner").order_by("owner__username", "name")
        choices = [
            (d.pk, f"{d.owner.get_username()} / {d.name}")
            for d in datasets[: FILTER_CHOICES_MAX + 1]
        ]
        return choices if len(choices) <= FILTER_CHOICES_MAX else []

    def queryset(self, request: HttpRequest, queryset: QuerySet[Record]) -> QuerySet[Record]:
        if not self.value():
            return queryset
        if not (self.value().isascii() and self.value().isdigit()):
            # (`?dataset__id__exact=abc` raised in the query: a 500)
            raise admin.options.IncorrectLookupParameters("a dataset is named by its id")
        return queryset.filter(dataset_id=self.value())


@admin.register(Record)
class RecordAdmin(ListAtScale, admin.ModelAdmin):
    list_display = ("key", "dataset_name", "data_preview", "updated_at")
    list_filter = (DatasetFilter,)
    search_fields = ("key",)
    list_select_related = ("dataset__owner",)
    raw_id_fields = ("dataset",)
    # Along the (dataset, key) index: by id, a dataset's page walked past every later record.
    ordering = ("dataset", "key")
    readonly_fields = ("data_table",)
    fields = ("dataset", "key", "data_table", "content_hash", "created_at", "updated_at")
    Media = AdminMedia

    @admin.display(description="dataset", ordering="dataset__name")
    def dataset_name(self, record: Record) -> str:
        return f"{record.dataset.owner.get_username()} / {record.dataset.name}"

    @admin.display(description="data")
    def data_preview(self, record: Record) -> SafeString:
        text = exact_json.dumps(record.data, ensure_ascii=False, default=str)
        if len(text) > DATA_PREVIEW_CHARS:
            text = text[: DATA_PREVIEW_CHARS - 1] + "…"
        return format_html('<code class="ib-data">{}</code>', text)

    @admin.display(description="data")
    def data_table(self, record: Record) -> SafeString | str:
        if not isinstance(record.data, dict):
            return format_html(
                "<pre>{}</pre>", exact_json.dumps(record.data, indent=2, default=str)
            )
        rows = format_html_join(
            "",
            "<tr><th>{}</th><td><code>{}</code></td></tr>",
            ((name, exact_json.dumps(value, ensure_ascii=False, default=str))
             for name, value in record.data.items()),
        )  # fmt: skip
        return format_html('<table class="ib-record">{}</table>', rows)

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
class NotificationDeliveryAdmin(ListAtScale, admin.ModelAdmin):
    """The notifications sent (schedules.notifications) and how each delivery went; read-only:
    the workers write it."""

    list_display = (
        "id", "scheduled_import", "event", "channel", "status", "attempts", "response_status",
        "created_at", "next_attempt_at",
    )  # fmt: skip
    list_filter = ("status", "event", "channel")
    search_fields = ("scheduled_import__name", "scheduled_import__owner__username", "target")
    list_select_related = ("scheduled_import",)
    raw_id_fields = ("scheduled_import", "run")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


def _attempt_notes(
    attempt: dict, zone, names: tuple[str, ...] = ("sent_again", "retry_sent_again", "ended")
) -> SafeString:
    """What else an attempt's entry says: the sweep sent the run again (why), or reconciliation
    its retry, and what became of the attempt, its worker alive after all
    (services.note_sent_again_while_alive); or, of `names` on a run's own details, what
    reconciliation noted of its message sent again."""
    notes = [
        (_moment_text(attempt.get(f"{name}_at"), zone), attempt[name])
        for name in names
        if isinstance(attempt.get(name), str) and attempt.get(name)
    ]
    return format_html_join("", '<p class="ib-attempt-note">{} {}</p>', notes)
