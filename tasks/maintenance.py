"""Maintenance jobs that beat runs (settings.CELERY_BEAT_SCHEDULE): the sweep and retention."""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import suppress
from datetime import datetime, timedelta
from typing import Any

import psycopg
from auditlog.models import LogEntry
from django.conf import settings
from django.contrib.sessions.models import Session
from django.db import DatabaseError, InterfaceError, OperationalError, connection
from django.db.models import Exists, OuterRef, Q, QuerySet
from django_celery_beat.models import CrontabSchedule, IntervalSchedule
from redis.exceptions import RedisError

from common import database_clock, error_words
from schedules import alerts, history, notifications, replaced_credentials, services
from schedules.fresh_connection import connection_lost
from schedules.models import (
    ImportRun,
    NotificationDelivery,
    ScheduledImport,
    delete_unused_schedule_rows,
)

from . import fairness, locks, lost_tasks, processed_retention, turns

logger = logging.getLogger("importbeat.maintenance")

DELETE_BATCH = 5_000


def unless_the_database_is_out(job: str, next_pass: str, work: Callable[[], Any]) -> Any:
    """`work()`; or, while importbeat's database is away or out of connections, this pass
    skipped in one WARNING line, and `{"skipped": <why, in words>}` its task's result.

    A restart, a failover or a server at its max_connections is known and passes: the next pass
    comes at its turn anyway (`next_pass` says when) and does the work. It failed its task
    with a library traceback in the worker's log and FAILURE in Flower, where a skip is no
    failure (a run skipped ends SUCCESS too), and buried the reason (clients hunt). Any other
    error is a bug, raised as it was, with its traceback.
    """
    try:
        return work()
    except (OperationalError, InterfaceError, psycopg.OperationalError) as error:
        if not connection_lost(error):
            raise  # a statement's error on a sound connection (a deadlock, a timeout)
        words = f"{_database_out(error)}; {next_pass}"
        # The library's text (its host and port) for the log only, on the same line.
        logger.warning("%s skipped this turn: %s (%s: %s)", job, words, type(error).__name__,
                       error_words.log_text(error))  # fmt: skip
        # A fresh session for the next pass of this process, whatever broke this one.
        with suppress(DatabaseError):
            connection.close()
        return {"skipped": words}


def next_pass_of(task_name: str) -> str:
    """When beat sends the job `task_name` again (settings.CELERY_BEAT_SCHEDULE), in words."""
    for entry in settings.CELERY_BEAT_SCHEDULE.values():
        if entry["task"] == task_name and isinstance(entry["schedule"], int | float):
            return f"the next pass comes in {entry['schedule']:.0f} s"
    return "the next pass comes at its turn"


def _database_out(error: BaseException) -> str:
    """Why the database could not be used, in words: out of connections is said apart from
    away (a full server is there and busy, error_words.OUT_OF_CONNECTIONS)."""
    if error_words.out_of_connections(error):
        return f"importbeat's database is out of connections: {error_words.reason(error)}"
    return f"cannot reach importbeat's database: {error_words.reason(error)}"


def sweep_runs(reporter: str | None = None) -> dict[str, int]:
    """Never leave a run stuck: what reconciliation cannot see in the broker.

    - `running` with no heartbeat for two lease periods and nobody holding its import's lease:
      its worker died without the message coming back (the whole worker was killed, so no
      `reject_on_worker_lost`; Redis would redeliver only after its visibility timeout, hours
      later). Another attempt is queued, or the run fails once its retries are spent.
    - a notification still `pending` after STALE_QUEUED_SECONDS, or `retrying` that long after
      its next attempt was due, is sent again: its message may be lost (Redis restarted without
      persistence), or the broker was down when its run finished or its retry was sent. So is
      the first parked notification of a line with a turn free (the task that held it died:
      tasks.turns).
    - the runs parked in their owners' lines (tasks.fairness) have their heartbeat kept ahead,
      so that reconciliation does not take them for lost messages, and the first ones of each
      line whose owner has a slot free are sent (the run whose end would have sent them was
      lost with its worker, or ended here).
    - a replaced credential still waiting after STALE_QUEUED_SECONDS to be hidden in its runs
      has its job sent again (schedules.replaced_credentials.resend_stale).

    A `queued` or `retrying` run whose message is lost is reconciliation's
    (schedules.reconcile.recover_lost_messages), which asks the broker before it sends one again.
    """
    # Heartbeats are the database's time, whichever worker wrote them (common.database_clock).
    now = database_clock.now()
    # Two periods: a heartbeat is written every third of one, so a live run is never this late.
    stale_before = now - timedelta(seconds=2 * settings.RUN_LEASE_SECONDS)
    recovered = 0
    # The result backend's writes of this pass's lost ends, bounded together (a silent backend
    # waited 10 s a lost task, and the soft time limit ended the pass).
    ends = lost_tasks.EndStore()
    lost = ImportRun.objects.filter(status=ImportRun.Status.RUNNING).filter(
        Q(heartbeat_at__lt=stale_before) | Q(heartbeat_at__isnull=True)
    )
    try:
        for run in lost.values("pk", "scheduled_import_id", "celery_task_id", "worker")[:500]:
            try:
                holder = locks.run_lease_holder(run["scheduled_import_id"])
            except RedisError as error:
                # Without Redis we cannot tell a slow run from a dead one: wait for the next
                # sweep.
                logger.warning("sweep cannot read leases: %s", error)
                break
            if holder == run["pk"]:
                continue  # its worker lives (renewing the lease) but cannot reach the database
            resolved = services.recover_lost_run(run["pk"], stale_before)
            if resolved is not None:
                recovered += 1
                # A foreground attempt's (run_import: no worker) has no task in Flower to end:
                # its task id was told there as a nameless failed task (review1).
                if reporter and run["worker"]:
                    lost_tasks.end_lost_task(run["celery_task_id"], resolved, reporter, store=ends)
        if reporter:
            # The ends a pass before could not tell (the broker away): a dead worker never will.
            lost_tasks.tell_untold_ends(reporter, ends)
        # And those told that a pass before could not store (the result backend away or silent).
        lost_tasks.store_unstored_ends(ends)
    finally:
        # Said also when the sweep's time limit ends the pass here: the ends it could not store
        # were said by nobody (reviewA hunt).
        ends.say()

    # Runs parked in their owners' lines (tasks.fairness): kept alive for reconciliation, and
    # the first ones sent where the run that would have sent them is gone (its worker killed,
    # its run ended above or at its hard time limit). Counted in the log, as the dict keeps
    # its keys.
    fairness.look_after_lines()

    stale = now - timedelta(seconds=settings.STALE_QUEUED_SECONDS)
    notified = _send_again("notifications", _resend_lost_notifications, stale)
    # Parked notifications whose turn's holder died (tasks.turns).
    notified += turns.send_stranded()
    # A replaced credential whose job was lost, or cut short, still to hide in its runs.
    hiding = _send_again("replaced credentials' hiding", replaced_credentials.resend_stale, stale)
    if recovered or notified or hiding:
        logger.warning("sweep recovered=%s notifications=%s replaced_credentials=%s",
                       recovered, notified, hiding)  # fmt: skip
    return {"recovered": recovered, "notifications": notified, "replaced_credentials": hiding}


def _resend_lost_notifications(stale: datetime) -> int:
    """The notifications whose message is lost, not those waiting their turn (tasks.turns)."""
    return notifications.resend_lost(stale, lambda ids: turns.parked(notifications.DELIVER, ids))


def _send_again(what: str, resend: Callable[[datetime], int], stale: datetime) -> int:
    """`resend(stale)`, or 0 while the broker does not answer (the next sweep tries again)."""
    try:
        return resend(stale)
    except services.BROKER_ERRORS as error:
        logger.warning("sweep cannot send %s: %r", what, error)
        return 0


def delete_old_runs() -> dict[str, int]:
    """Retention: runs older than RUN_RETENTION_DAYS go; failed and timed-out ones stay until
    FAILED_RUN_RETENTION_DAYS, because they are the ones someone investigates. What was said
    about runs goes with them, by the same two ages: the notification log (a delivery that
    failed is kept as long as a failed run) and the history's run events (triggered, retried,
    cancelled). The history's changes of an import, who set what, are kept, and so is the
    `late` notice of a late streak still under way, however old, and the run that alerted of a
    failure streak still under way: each streak is told once.

    Active runs and deliveries still to be sent are never deleted. Deletes go in batches by id
    so that one sweep over a large log never holds long locks nor one huge transaction.
    """
    now = database_clock.now()
    kept_until = now - timedelta(days=settings.RUN_RETENTION_DAYS)
    failures_kept_until = now - timedelta(days=settings.FAILED_RUN_RETENTION_DAYS)
    failed = [ImportRun.Status.FAILED, ImportRun.Status.TIMED_OUT]
    # The run that alerted of a failure streak still under way stays, as the late notice
    # does: it is what says the streak was told (alerts.on_run_finished). An import failing
    # every hour had it deleted after 90 days, and its owner alerted again every 90 days.
    good_since = ImportRun.objects.filter(
        scheduled_import_id=OuterRef("scheduled_import_id"),
        status__in=ImportRun.GOOD_STATUSES,
        finished_at__gt=OuterRef("finished_at"),
    )
    streak_alerted = (
        Q(error_details__has_key=alerts.ALERTED)
        & Q(scheduled_import__consecutive_failures__gt=0)
        & ~Exists(good_since)
    )
    runs = (
        ImportRun.objects.exclude(status__in=ImportRun.ACTIVE_STATUSES)
        # The later age too, AND'ed: the walk along the queued_at index starts there. Without
        # it each batch walked back from the newest run, past every run kept (the daily pass
        # read the whole run table).
        .filter(queued_at__lt=max(kept_until, failures_kept_until))
        .filter(
            (Q(queued_at__lt=kept_until) & ~Q(status__in=failed))
            | Q(queued_at__lt=failures_kept_until, status__in=failed)
        )
        .exclude(streak_alerted)
    )
    sent = NotificationDelivery.Status
    # The notice of a late streak still under way stays: it is what says the streak was told
    # (notifications.late_deliveries_of_streak, reconcile.tell_late_owners_not_told). A
    # quarterly import late since January had it deleted after 30 days and its owner e-mailed
    # again every month.
    # One pk lookup of its import per old `late` row, a handful per streak: no scan.
    streak_told = Exists(
        ScheduledImport.objects.filter(
            pk=OuterRef("scheduled_import_id"), late_since__lte=OuterRef("created_at")
        )
    )
    deliveries = (
        NotificationDelivery.objects.filter(
            Q(created_at__lt=kept_until, status__in=[sent.DELIVERED, sent.SKIPPED])
            | Q(created_at__lt=failures_kept_until, status=sent.FAILED)
        )
        .exclude(Q(event="late") & streak_told)
        .order_by("pk")  # the oldest lead the id index: a batch stops at its first 5,000
    )
    events = LogEntry.objects.filter(
        action=LogEntry.Action.ACCESS,
        timestamp__lt=kept_until,
        additional_data__event__in=history.RUN_EVENTS,
    ).order_by()
    # The deliveries before their runs: a run's deletion would first set its deliveries' run
    # to NULL, a write of every delivery about to go anyway.
    deliveries_deleted = _delete_in_batches(deliveries)
    deleted = {
        "deleted": _delete_in_batches(runs),
        "deliveries": deliveries_deleted,
        "events": _delete_in_batches(events),
        # Expired browser sessions (the admin's, the dashboard's): Django deletes one only at
        # its logout, and every sign-in left without one stayed for good (growth hunt).
        "sessions": _delete_in_batches(Session.objects.filter(expire_date__lt=now).order_by()),
        # Schedule rows no beat entry uses: those a save moving off one had to pass over (a
        # save was picking it), and those left before saves deleted them (growth hunt).
        "schedule_rows": delete_unused_schedule_rows(CrontabSchedule)
        + delete_unused_schedule_rows(IntervalSchedule),
    }
    # Drop folders' processed files, by their own age (PROCESSED_FILE_RETENTION_DAYS).
    deleted.update(processed_retention.delete_old_processed_files())
    if any(deleted.values()):
        logger.info("retention deleted=%(deleted)s runs, %(deliveries)s deliveries, "
                    "%(events)s run events, %(sessions)s expired sessions, "
                    "%(schedule_rows)s unused schedule rows", deleted)  # fmt: skip
    return deleted


def _delete_in_batches(queryset: QuerySet) -> int:
    """Delete what `queryset` selects, DELETE_BATCH rows per statement; how many went.

    Runs go through services.delete_runs (a few statements per batch, as an import's runs go):
    Django's delete read every column of each run (`error_details` included) to set to NULL
    what points at it, 0.5 s a batch of 5,000, and a million runs held a worker slot 145 s."""
    deleted = 0
    while True:
        ids = list(queryset.values_list("pk", flat=True)[:DELETE_BATCH])
        if not ids:
            return deleted
        batch = queryset.model.objects.filter(pk__in=ids)
        if queryset.model is ImportRun:
            services.delete_runs(batch, ended_only=True)  # (retention keeps what has not ended)
        else:
            batch.delete()
        deleted += len(ids)
