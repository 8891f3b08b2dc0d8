"""Alerts: an import that keeps failing tells its owner, once per failure streak.

When a failed (or timed out) run brings `consecutive_failures` to the import's
`alert_after_failures`, the alert is logged as one structured line and queued as deliveries of
the event `alert` (schedules.notifications): an e-mail to the owner (Django's email backend)
and, when the import has a `callback_url`, a webhook POST of the run summary, each with its own
retries. The deliveries are the import's notification log (`GET /imports/{id}/deliveries`), so
an alert that could not reach its owner (no e-mail address, a callback refusing it, a broker
down when the run ended: the sweep sends it again) shows there, not only in a worker's log. A
success resets the streak (services.apply_outcome); `alert_after_failures` 0 turns alerts off.
An import turning late tells its owner once per late streak the same way (event `late`:
notifications.on_imports_late, with late_email's words).

What is sent, when, and how it is signed is decided here; the POST itself is the worker's
(tasks.webhooks), and the tasks are sent by name (STYLE rule 15: schedules never imports tasks).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple
from zoneinfo import ZoneInfo

from .text import printable

if TYPE_CHECKING:
    from django.db.models import QuerySet

    from .models import ImportRun, ScheduledImport

logger = logging.getLogger("importbeat.alerts")


def on_run_finished(imp: ScheduledImport, run: ImportRun) -> bool:
    """Whether this run completes the streak (then the alert is logged here, and finish_run
    queues its deliveries: notifications.queue_alert); called inside finish_run's transaction.

    Alerting once a streak, when the count reaches the threshold or has passed it (not at
    every failure after it), keeps a broken import from mailing its owner every interval; the
    run that alerted is marked (`error_details.alerted`).
    """
    from .models import ImportRun, ScheduledImport

    if run.status not in (ImportRun.Status.FAILED, ImportRun.Status.TIMED_OUT):
        return False
    failures = ScheduledImport.objects.values_list("consecutive_failures", flat=True).get(pk=imp.pk)
    # The streak as this run ended, from the import's own counter (streak_at): the run log is
    # thinned by retention (good runs go after 30 days, failed ones after 90), and a streak
    # rebuilt from it ran back past the good run retention had taken.
    details = {**run.error_details, STREAK: failures}
    # Reached or passed, once a streak: a threshold lowered below the streak while it ran
    # never met the count again (24 failures, no alert), and one raised after its alert met it
    # a second time (two alerts in one streak).
    alert = (
        bool(imp.alert_after_failures)
        and failures >= imp.alert_after_failures
        and not _alerted_in_streak(imp.pk, failures)
    )
    if alert:
        # The threshold it met: the alert posted later (a receiver down a minute, an e-mail
        # held for the digest) read the import's, raised meanwhile, and said "3 failures in a
        # row" beside "alert after 10" (notifications hunt).
        details[ALERTED] = True
        details[THRESHOLD] = imp.alert_after_failures
    run.error_details = details
    ImportRun.objects.filter(pk=run.pk).update(error_details=details)
    if not alert:
        return False
    logger.error(
        "import alert import=%s run=%s status=%s consecutive_failures=%s owner=%s error=%s",
        imp.pk, run.pk, run.status, failures, imp.owner_id, json.dumps(run.error_message),
    )  # fmt: skip
    return True


# The import's failures in a row as a failed run ended (error_details).
STREAK = "streak"
# Marks the run of a streak that alerted (error_details).
ALERTED = "alerted"
# And the threshold it met (`alert_after_failures` then).
THRESHOLD = "alert_threshold"


def _alerted_in_streak(import_id: int, failures: int) -> bool:
    """Whether a run of the import's current failure streak (its last `failures` failed runs)
    alerted already. The streak rebuilt as "the failed runs since the last good one" ran back
    past a good run retention had deleted, found the last streak's alert, and the new streak
    never alerted."""
    from .models import ImportRun

    streak = (
        ImportRun.objects.filter(
            scheduled_import_id=import_id, status__in=ImportRun.FAILED_STATUSES
        )
        .order_by("-finished_at", "-pk")
        .values("pk")[:failures]
    )
    return ImportRun.objects.filter(pk__in=streak, error_details__has_key=ALERTED).exists()


def streak_at(run: ImportRun) -> int:
    """The failures in a row of the run's import as that run ended: the failed and timed-out
    runs since the last good one up to it (skipped and cancelled runs neither extend a streak
    nor end it, as services.apply_outcome counts).

    What a notification about the run says, however late it goes out: read from the import
    when it was sent, an alert held for the owner's digest, or retried, after the import had
    recovered said "products failed 0 times in a row"."""
    if run.finished_at is None or run.status not in run.FAILED_STATUSES:
        return 0
    if isinstance(run.error_details, dict) and STREAK in run.error_details:
        return int(run.error_details[STREAK])  # as its import counted it (on_run_finished)
    return _streak_runs(run.scheduled_import_id, up_to=run.finished_at).count()


def _streak_runs(import_id: int, up_to: datetime | None = None) -> QuerySet[ImportRun]:
    """The failed and timed-out runs of the import since its last good run (up to a moment)."""
    from .models import ImportRun

    runs = ImportRun.objects.filter(scheduled_import_id=import_id)
    if up_to is not None:
        runs = runs.filter(finished_at__lte=up_to)
    last_good = (
        runs.filter(status__in=ImportRun.GOOD_STATUSES)
        .order_by("-finished_at")
        .values_list("finished_at", flat=True)
        .first()
    )
    failed = runs.filter(status__in=ImportRun.FAILED_STATUSES)
    return failed.filter(finished_at__gt=last_good) if last_good is not None else failed


def run_summary(run: ImportRun) -> dict[str, Any]:
    """What the webhook receives (and the email shows): the import, the run, the streak as the
    run ended (streak_at)."""
    imp = run.scheduled_import

    def iso(value):
        return value.isoformat() if value else None

    return {
        "event": "import.failing",
        "import": {
            "id": imp.pk,
            "name": imp.name,
            "owner": imp.owner.get_username(),
            "source_url": imp.source_url,
            "consecutive_failures": streak_at(run),
            "alert_after_failures": _threshold_met(run) or imp.alert_after_failures,
        },
        "run": {
            "id": run.pk,
            "status": run.status,
            "trigger": run.trigger,
            "scheduled_for": iso(run.scheduled_for),
            "queued_at": iso(run.queued_at),
            "started_at": iso(run.started_at),
            "finished_at": iso(run.finished_at),
            "attempts": run.attempts,
            "error_message": run.error_message,
            # What landed, as the run log (GET /runs/{id}/) says it: the body carried only the
            # rows read and failed, and a receiver told "data landed" could not tell how much
            # without calling the API back (notifications hunt).
            "rows_read": run.rows_read,
            "rows_inserted": run.rows_inserted,
            "rows_updated": run.rows_updated,
            "rows_unchanged": run.rows_unchanged,
            "rows_deleted": run.rows_deleted,
            "rows_failed": run.rows_failed,
            "duration_ms": run.duration_ms,
        },
    }


def _threshold_met(run: ImportRun) -> int | None:
    """The threshold the run's alert met (on_run_finished); None when it did not alert, or
    alerted before the threshold was kept."""
    return (run.error_details or {}).get(THRESHOLD)


def alert_email(run: ImportRun) -> tuple[str, str]:
    """The failure-streak alert's e-mail about `run`: (subject, message)."""
    imp = run.scheduled_import
    summary = run_summary(run)
    streak = summary["import"]["consecutive_failures"]
    # "failed once", not "failed 1 times in a row" (notifications hunt).
    times = "once" if streak == 1 else f"{streak} times in a row"
    # printable: a line break in a stored name would make the header raise BadHeaderError.
    subject = f"[importbeat] {printable(imp.name)} failed {times}"
    message = (
        f"The import {imp.name!r} (id {imp.pk}) failed {times}.\n\n"
        f"Last run {run.pk}: {status_words(run.status)}\n{run.error_message}\n\n"
        f"{json.dumps(summary, indent=2)}\n"
    )
    return subject, message


# A run's status as an e-mail says it: "timed out", not its code "timed_out".
STATUS_WORDS = {"partial": "partly succeeded (some rows failed)", "timed_out": "timed out"}


def status_words(status: str) -> str:
    return STATUS_WORDS.get(status, status.replace("_", " "))


class Webhook(NamedTuple):
    """A signed POST to send (tasks.webhooks.post_signed): where, what, and the signing key."""

    url: str
    payload: dict[str, Any]
    secret: str


SIGNATURE_HEADER = "Importbeat-Signature"


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """`t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<body>" with the import's secret>`, as Stripe
    signs its webhooks: the timestamp is signed too, so a receiver can refuse old replays."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


# --- late imports -----------------------------------------------------------------------------


def _local(moment: datetime, zone: str) -> str:
    """`2026-12-07 06:00 CET`: a time in the import's zone, as its schedule is said. The late
    e-mail said "Next run: 2026-12-07T05:00:00+00:00" beside "At 06:00 (Europe/Berlin)", and
    microseconds (notifications hunt)."""
    local = moment.astimezone(ZoneInfo(zone))
    return f"{local:%Y-%m-%d %H:%M} {local.tzname()}"


def late_email(imp: ScheduledImport) -> tuple[str, str]:
    """The e-mail saying that `imp` missed a tick: (subject, message)."""
    # A header never carries a line break, whatever the name holds.
    name = " ".join(imp.name.split())
    noticed = _local(imp.late_since, imp.timezone) if imp.late_since else "just now"
    subject = f"[importbeat] {name} is late"
    if not imp.missed_while_late and imp.next_run_at is not None:
        # Noticed while no beat ran (schedules.overdue): no tick is counted missed yet.
        return subject, (
            f"The import {name!r} (id {imp.pk}) is late: its run due at "
            f"{_local(imp.next_run_at, imp.timezone)} has not been dispatched (noticed at "
            f"{noticed}).\n"
            f"Schedule: {imp.schedule_description}.\n"
            "No beat process is dispatching runs: the ticks it misses are counted when beat "
            "is back, and the import's catch-up policy decides whether they still run.\n"
        )
    # `late_since` is when a missed tick was noticed (beat back, or reconciliation);
    # `missed_while_late` counts this streak's ticks, `missed_ticks` every tick ever missed.
    next_run = imp.next_run_listed()  # (as the API lists it: never a tick beat will not fire)
    message = (
        f"The import {name!r} (id {imp.pk}) missed its schedule: a tick passed without a run "
        f"(noticed at {noticed}). It has missed {imp.missed_while_late} tick(s) since it "
        f"turned late ({imp.missed_ticks} in all).\n"
        f"Schedule: {imp.schedule_description}. Next run: "
        f"{_local(next_run, imp.timezone) if next_run else 'none'}.\n"
        "Ticks are missed when no beat process is running or a run's message is lost; the "
        "import's catch-up policy decides whether the missed ticks still run.\n"
    )
    if imp.late_since is not None and imp.late_since == imp.schedule_changed_at:
        # Counted when the schedule was changed: the schedule as changed decides what runs
        # next, and they do not (a catch-up was promised that never came; review).
        message = message.replace(
            "the import's catch-up policy decides whether the missed ticks still run.",
            "they were counted when the import's schedule was changed, and do not run (the "
            "schedule as changed decides what runs next).",
        )
    return subject, message
