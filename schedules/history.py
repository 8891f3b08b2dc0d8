"""Who changed an import, when, from where, and what (old -> new).

django-auditlog records every save and delete of a ScheduledImport as a LogEntry, whatever
the surface (services, the admin's forms, commands); the events that are not a change of the
import's row (a manual trigger, a run cancelled or retried) are recorded here too, so one list
tells the import's story. Only the fields a user sets (and `status`) are tracked, an allow-list:
a column added later, a credential say, is never recorded unless it is named here, and a
password in a URL (`https://user:secret@host/`) is recorded as `***`.
"""

from __future__ import annotations

import sys
from contextvars import ContextVar
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from auditlog.cid import get_cid
from auditlog.middleware import AuditlogMiddleware
from auditlog.models import LogEntry
from auditlog.registry import auditlog
from django.contrib.auth.models import AbstractBaseUser
from django.contrib.contenttypes.models import ContentType
from django.db import DEFAULT_DB_ALIAS
from django.db.models.signals import post_save, pre_save
from django.http import HttpRequest, HttpResponse
from django.utils.encoding import smart_str
from django.utils.functional import SimpleLazyObject

from common.security import client_ip

from . import rows
from .models import Dataset, ImportRun, ScheduledImport

# The fields of an import a user changes; counters, ticks and bookkeeping are the system's.
# test_history_of_changes holds it to what the API and the admin write: `source_member` and
# `move_processed` were left out, and their changes were nowhere. Not the owner the admin may
# change: its new owner would read the former one's name (the admin's own log has it).
TRACKED_FIELDS = [
    "name", "description", "source_url", "source_member", "move_processed",
    "delimiter", "encoding", "has_header", "dataset",
    "key_column", "columns", "mode", "schedule_type", "cron_expression", "interval_seconds",
    "timezone", "max_retries", "retry_backoff_seconds", "retry_backoff_max_seconds",
    "timeout_seconds", "overlap", "catchup", "alert_after_failures", "callback_url", "status",
    "notify_on", "notify_channels", "credential_kind", "credential_origin",
]  # fmt: skip
URL_FIELDS = ["source_url", "callback_url"]

# Which surface a change came from: set per request by ChangeContextMiddleware; a process
# started by manage.py (a command) says "command"; workers and beat, "system".
_DEFAULT_VIA = "command" if Path(sys.argv[0]).name == "manage.py" else "system"
via: ContextVar[str] = ContextVar("importbeat_change_via", default=_DEFAULT_VIA)


def register() -> None:
    auditlog.register(
        ScheduledImport,
        include_fields=TRACKED_FIELDS,
        mask_fields=URL_FIELDS,
        mask_callable="schedules.history.hide_url_password",
    )
    # A receiver rather than auditlog's model hook (`get_additional_data`), which would have
    # the model import this module while this module imports the model (STYLE rule 15).
    pre_save.connect(_stamp_via, sender=LogEntry, dispatch_uid="importbeat.history.via")


def _stamp_via(sender: type[LogEntry], instance: LogEntry, **_kwargs: Any) -> None:
    """Every new entry says which surface the change came from (`via`)."""
    if instance._state.adding:
        instance.additional_data = {"via": via.get(), **(instance.additional_data or {})}


def hide_url_password(url: str) -> str:
    """The URL as recorded: a password in it becomes `***` (the rest says which source)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


# The events about one run (services.enqueue_run, cancel_run): retention deletes them with the
# runs; every other entry (an import's changes, a host key accepted) is kept.
# A queue of deliveries' next run, queued as the run before it ends (tasks.deliveries).
NEXT_DELIVERY = "next delivery queued"
RUN_EVENTS = ("run triggered", "run retried", "run cancelled", NEXT_DELIVERY)


def record_event(
    imp: ScheduledImport, event: str, user: AbstractBaseUser | None, **details: Any
) -> LogEntry:
    """An event of the import that is not a change of its row (`run triggered`, ...).

    The very row auditlog's `LogEntry.objects.log_create(imp, force_log=True, ...)` writes,
    and the same signals around it (auditlog's request context fills the address and, for no
    user, the actor; `_stamp_via` the surface), but inserted by a statement written once
    (rows.insert): compiling auditlog's INSERT was a sixth of a trigger's CPU (issue 15).
    `test_history_events_are_the_rows_auditlog_writes` compares the two row by row.
    """
    entry = _event_entry(imp, event, user, **details)
    _written([entry], lambda entries: rows.insert(entries[0]))
    return entry


def record_run_events(
    runs: list[ImportRun], event: str, user: AbstractBaseUser | None
) -> list[LogEntry]:
    """record_event's entry of each run (`event`, naming the run), for many runs of as many
    imports at once (schedules.manual_runs), inserted together."""
    entries = [_event_entry(run.scheduled_import, event, user, run=run.pk) for run in runs]
    _written(entries, lambda made: LogEntry.objects.bulk_create(made, batch_size=1000))
    return entries


def _event_entry(
    imp: ScheduledImport, event: str, user: AbstractBaseUser | None, **details: Any
) -> LogEntry:
    """The unsaved entry of an event of `imp` (record_event, record_run_events)."""
    actor = user if user is not None and user.is_authenticated else None
    return _entry(
        imp, LogEntry.Action.ACCESS, {}, actor=actor, additional_data={"event": event, **details}
    )


def delete_entries(entries: list[LogEntry]) -> None:
    """Take back entries just written (their runs withdrawn)."""
    LogEntry.objects.filter(pk__in=[entry.pk for entry in entries if entry.pk]).delete()


def record_status_changes(imports: list[ScheduledImport], was: dict[int, str]) -> None:
    """The entry auditlog writes for a save that changed `status` alone (from `was`, by id),
    for each import whose status changed, inserted together (schedules.statuses)."""
    entries = [
        _entry(imp, LogEntry.Action.UPDATE, {"status": [was[imp.pk], imp.status]})
        for imp in imports
        if was[imp.pk] != imp.status
    ]
    _written(entries, lambda made: LogEntry.objects.bulk_create(made, batch_size=1000))


def _entry(imp: ScheduledImport, action: int, changes: dict[str, Any], **fields: Any) -> LogEntry:
    """The LogEntry auditlog's `log_create` makes for `imp`, unsaved."""
    return LogEntry(
        content_type_id=ContentType.objects.get_for_model(imp).pk,
        object_pk=str(imp.pk),
        object_id=imp.pk,
        object_repr=smart_str(imp),
        serialized_data=LogEntry.objects._get_serialized_data_or_none(imp),
        action=action,
        changes=changes,
        cid=get_cid(),
        **fields,
    )


def _written(entries: list[LogEntry], write: Any) -> None:
    """`write` the entries, with the signals a save sends around each (auditlog's request
    context fills the actor and address, `_stamp_via` the surface)."""
    for entry in entries:
        pre_save.send(
            LogEntry, instance=entry, raw=False, using=DEFAULT_DB_ALIAS, update_fields=None
        )
    if entries:
        write(entries)
    for entry in entries:
        post_save.send(
            LogEntry, instance=entry, created=True, raw=False, using=DEFAULT_DB_ALIAS,
            update_fields=None,
        )  # fmt: skip


class ChangeContextMiddleware(AuditlogMiddleware):
    """auditlog's middleware, made to see API users and to trust only the project's proxies.

    The actor is resolved when an entry is written, not when the request comes in: an API
    token is checked by DRF inside the view, after every middleware has run (DRF then sets the
    Django request's user). The address is the one the rest of the project believes
    (TRUSTED_PROXIES), not any X-Forwarded-For.
    """

    @staticmethod
    def _get_actor(request: HttpRequest) -> SimpleLazyObject:
        return SimpleLazyObject(lambda: _authenticated_user(request))

    @staticmethod
    def _get_remote_addr(request: HttpRequest) -> str | None:
        return client_ip(request) or None

    @staticmethod
    def _get_remote_port(request: HttpRequest) -> int | None:
        return None

    def __call__(self, request: HttpRequest) -> HttpResponse:
        path = request.path
        surface = (
            "api" if path.startswith("/api/") else "admin" if path.startswith("/admin/") else "web"
        )
        token = via.set(surface)
        try:
            return super().__call__(request)
        finally:
            via.reset(token)


def _authenticated_user(request: HttpRequest) -> AbstractBaseUser | None:
    user = getattr(request, "user", None)
    return user if user is not None and user.is_authenticated else None


# --- reading it back -----------------------------------------------------------------------

STATUS_EVENTS = {"paused": "paused", "active": "resumed", "cancelled": "cancelled"}


def entries_for(imp: ScheduledImport):
    """The import's entries, newest first (auditlog's index on (content type, object id))."""
    return (
        LogEntry.objects.get_for_object(imp).select_related("actor").order_by("-timestamp", "-pk")
    )


def describe(entry: LogEntry) -> dict[str, Any]:
    """One entry as the API shows it: what happened, by whom, via which surface, old -> new."""
    extra = entry.additional_data or {}
    changes = {
        field: {"from": _shown(old), "to": _shown(new)}
        for field, (old, new) in (entry.changes_dict or {}).items()
    }
    if "dataset" in changes:
        # auditlog keeps a foreign key's id; the user knows a dataset by its name.
        ids = [v for v in changes["dataset"].values() if v and v.isdigit()]
        names = {
            str(pk): name
            for pk, name in Dataset.objects.filter(pk__in=ids).values_list("pk", "name")
        }
        changes["dataset"] = {k: names.get(v, v) for k, v in changes["dataset"].items()}
    return {
        "at": entry.timestamp,
        "by": entry.actor.get_username() if entry.actor else None,
        "via": extra.get("via", ""),
        "action": _action(entry, changes, extra),
        "changes": changes,
        "run": extra.get("run"),
    }


def _action(entry: LogEntry, changes: dict, extra: dict) -> str:
    if entry.action == LogEntry.Action.ACCESS:
        return extra.get("event", "event")
    if entry.action == LogEntry.Action.CREATE:
        return "created"
    if entry.action == LogEntry.Action.DELETE:
        return "deleted"
    if set(changes) == {"status"}:
        return STATUS_EVENTS.get(changes["status"]["to"], "updated")
    return "updated"


def _shown(value: str | None) -> str | None:
    # auditlog writes a missing value as "None".
    return None if value in (None, "None") else value
