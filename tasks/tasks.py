"""Celery tasks: thin wrappers that take ids and hand over to schedules and the runner."""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any, NoReturn

from celery import shared_task, states
from celery.exceptions import BackendError, Ignore, Reject, Retry
from django.conf import settings
from kombu.exceptions import KombuError
from redis.exceptions import RedisError

from common import database_clock, error_words
from schedules import (
    email_digest,
    notifications,
    overdue,
    reconcile,
    replaced_credentials,
    services,
)

from . import killed_runs, lost_tasks, maintenance, runner, source_check, turns, webhooks
from .errors import NotificationFailed, RunFailed

logger = logging.getLogger("importbeat.alerts")


@shared_task(
    name="importbeat.dispatch_scheduled_import",
    ignore_result=True,
    soft_time_limit=60,
    time_limit=90,
)
def dispatch_scheduled_import(
    import_id: int, scheduled_for: str | None = None, trigger: str = "schedule"
) -> None:
    """Beat's entry point: one tick of one import becomes at most one queued run."""
    # A tick the database could not take goes back to the queue (its run is unique per tick,
    # so a tick that did land is not dispatched twice).
    with runner.database_or_requeue(f"the tick of import {import_id}"):
        services.dispatch_scheduled_tick(import_id, scheduled_for, trigger)


@shared_task(
    bind=True,
    name="importbeat.execute_run",
    # Acknowledge only when the run ended, and give it back if the worker process died, so a
    # crash mid-import leads to a redelivery rather than a lost run. Time limits come per
    # message from the import's timeout_seconds (services.send_run).
    acks_late=True,
    reject_on_worker_lost=True,
    # A failed run fails its task (its state in Flower) without a traceback in the worker log:
    # the run log has the error.
    throws=(RunFailed,),
    # No Celery retry limit: the runner counts attempts against the import's max_retries, and
    # a run that waits (its import's lease, its owner's cap) comes back as often as it takes.
    # Celery's default of 3 ended such a wait with MaxRetriesExceededError after 3 looks.
    max_retries=None,
    # A finished run's result is not stored by Celery: nothing reads it (Flower has it from
    # the task-succeeded event, the API the run row), and storing it was a Redis write of every
    # small run (issue 15). Its PROGRESS, RETRY and FAILURE states still are: the API's live
    # progress reads the task state while the run runs, and a retry's RETRY replaces the
    # PROGRESS its failed attempt left, so the next attempt never shows that one's figures.
    # A run that ended after such a state stores its end over it (_ended).
    ignore_result=True,
    store_errors_even_if_ignored=True,
    # A failure's or a retry's traceback is not stored with its state: the run log holds the
    # error (and, for staff, the traceback of one it could not explain), the worker log an
    # unexpected one; the traceback of the runner's own frames was 0.8-1.1 kB of each such
    # state, kept a day (project.task_class).
    stored_traceback_chars=0,
)
def execute_run(
    self, run_id: int, import_id: int | None = None, import_name: str = ""
) -> dict | None:
    """One run. `import_id` and `import_name` only label the task (Flower's task list)."""
    kept = runner.KeptState()
    try:
        ran = runner.execute(run_id, self, kept)
    except runner.StoppedBeforeDelivery as stopped:
        # Told REVOKED at the cancel or the deletion (or never told, stopped before a worker
        # took it): ended SUCCESS here, it said so for good, as Flower lets SUCCESS overwrite
        # REVOKED. Ignored, the message is acknowledged and Flower hears nothing after the revoke.
        if _told_revoked(self, run_id):
            _ended(self, kept, None, revoked=True)
            raise Ignore() from None
        _ended(self, kept, stopped.summary)
        return stopped.summary
    # Stopped alive after the sweep took it for lost, or finding its run ended under it by the
    # sweep: it ends as the sweep told Flower, once (a failure stored as FAILURE, which replaces
    # any state the task kept). Asked before the run's own failure is raised: a run the sweep
    # failed from its committed counts (every row refused) was told a second `task-failed`.
    told = lost_tasks.told_when_taken_for_lost(self.request.id, run_id, ran)
    if isinstance(told, RunFailed):
        raise told
    result = runner.task_result(ran) if told is None else ran
    _ended(self, kept, result)
    if told:
        raise told
    return result


def _ended(task: Any, kept: runner.KeptState, result: dict | None, revoked: bool = False) -> None:
    """Store the end of a run's task (`result`, its summary: SUCCESS; or REVOKED) over the
    state the result backend keeps of it (kept.kept: a RETRY of a wait, a PROGRESS), which
    said "waiting its turn" of a run that had succeeded, for a day (Flower's result page,
    AsyncResult). Stored rather than deleted: no attempt's state is stored over an end
    (project.task_class._EndKept), so a wait's RETRY that lands late (its worker slow, the run
    sent again and ended meanwhile) leaves the end in place. A run that never waited stored
    nothing, and stores nothing here (issue 15)."""
    # (no result: nothing was done, another delivery has the run, whose state it is)
    if not kept.kept or not task.request.id or (result is None and not revoked):
        return
    try:
        if revoked:
            task.backend.mark_as_revoked(
                task.request.id, "the run was cancelled or deleted", request=task.request
            )
        else:
            task.backend.store_result(task.request.id, result, states.SUCCESS, request=task.request)
    except (RedisError, BackendError, OSError) as error:
        # The run log has its end; the state stays until CELERY_RESULT_EXPIRES.
        logger.warning("the end of task %s (a run) not stored: %r", task.request.id, error)


def _told_revoked(task: Any, run_id: int) -> bool:
    """Tell Flower that `task` (of a run stopped before it came) is revoked; False when the
    broker cannot take the event (the task then ends SUCCESS, saying what became of the run)."""
    try:
        task.send_event("task-revoked", terminated=False, signum=None, expired=False)
    except (KombuError, RedisError, OSError) as error:
        logger.warning("run=%s: Flower not told its task is revoked: %s", run_id, error)
        return False
    return True


@shared_task(
    name=killed_runs.END_KILLED_RUN, bind=True, ignore_result=True, soft_time_limit=60,
    time_limit=90,
)  # fmt: skip
def end_killed_run(self, run_id: int, task_id: str, soft_limit: float | None = None) -> None:
    """A run whose attempt `task_id` its worker killed at the hard time limit."""
    killed_runs.end(run_id, task_id, reporter=self.request.hostname, soft_limit=soft_limit)


@shared_task(name="importbeat.noop")
def noop() -> None:
    """Does nothing: the reference a small run's throughput is measured against
    (tests/bench/bench_small_runs.py), with the worker's default task settings."""


@shared_task(
    name="importbeat.sweep_runs", bind=True, ignore_result=True, soft_time_limit=120,
    time_limit=150,
)  # fmt: skip
def sweep_runs(self) -> dict[str, Any]:
    # The worker that ends a lost attempt's task in Flower (tasks.lost_tasks).
    return maintenance.unless_the_database_is_out(
        "sweep", maintenance.next_pass_of(self.name),
        lambda: maintenance.sweep_runs(reporter=self.request.hostname),
    )  # fmt: skip


@shared_task(
    name="importbeat.delete_old_runs", ignore_result=True, soft_time_limit=1800, time_limit=1900
)
def delete_old_runs() -> dict[str, Any]:
    return maintenance.unless_the_database_is_out(
        "retention", maintenance.next_pass_of(delete_old_runs.name), maintenance.delete_old_runs
    )


@shared_task(
    name="importbeat.hide_replaced_credential",
    ignore_result=True,
    soft_time_limit=1800,
    time_limit=1900,
)
def hide_replaced_credential(replaced_id: int) -> dict | None:
    """A credential an import no longer has, hidden in its runs; the message holds only the id
    of the row that keeps it encrypted (schedules.replaced_credentials)."""
    return replaced_credentials.hide(replaced_id)


@shared_task(name="importbeat.check_source", soft_time_limit=25, time_limit=30)
def check_source(import_id: int) -> dict:
    """The admin's Test source; its caller waits for the result (schedules.source_check)."""
    return source_check.check_source(import_id)


@shared_task(name="importbeat.check_source_fields", soft_time_limit=25, time_limit=30)
def check_source_fields(key: str) -> dict:
    """`POST /imports/check` and `?dry_run=true`: an import not saved yet, checked the same way.
    `key` names its fields in Redis, so that no credential is among the task's arguments."""
    return source_check.check_fields(key)


@shared_task(
    name="importbeat.reconcile_ticks", ignore_result=True, soft_time_limit=120, time_limit=150
)
def reconcile_ticks() -> dict[str, Any]:
    return maintenance.unless_the_database_is_out(
        "reconciliation", maintenance.next_pass_of(reconcile_ticks.name), reconcile.reconcile
    )


# A notification's task: failed for good, it fails (Flower) without a traceback, its delivery
# log saying why (NotificationFailed); a transient failure is retried (_send_notification).
NOTIFICATION_TASK = {
    "bind": True,
    # No Celery retry limit: _send_notification counts the attempts against MAX_RETRIES.
    # Celery's default of 3 ended the fourth transient failure as an unexpected error, its
    # notification left `retrying` for ever.
    "max_retries": None,
    "ignore_result": True,
    "throws": (NotificationFailed,),
    "soft_time_limit": webhooks.TIME_LIMIT_SECONDS,
    "time_limit": webhooks.TIME_LIMIT_SECONDS + 30,
}


@shared_task(name="importbeat.send_email_digest", **NOTIFICATION_TASK)
def send_email_digest(self, owner_id: int) -> None:
    """Send an owner's held e-mails once their interval is over (tasks.webhooks.send_digest),
    retried like a webhook when the mail server cannot take them yet."""
    job = turns.Job(self.name, self.request.id, owner_id, self.request.retries)
    _send_notification(
        self,
        turns.turn(turns.MAIL, job, settings.EMAIL_CONCURRENCY),
        # (each e-mail's last attempt told by its log's count, not the message's retries: a
        # stale message's made the next failure final for all: webhooks.send_digest)
        lambda _final: webhooks.send_digest(owner_id),
    )


# Alerts are notification deliveries now (events `alert` and `late`, delivered by
# deliver_notification). These three names stay for the messages an earlier version queued
# before it was stopped: each queues its alert's delivery, delivered and logged like any other.
@shared_task(name="importbeat.send_alert_email", ignore_result=True)
def send_alert_email(run_id: int) -> None:
    notifications.queue_alert_of_run(run_id, ("email",))


@shared_task(name="importbeat.send_alert_webhook", ignore_result=True)
def send_alert_webhook(run_id: int) -> None:
    notifications.queue_alert_of_run(run_id, ("webhook",))


@shared_task(name="importbeat.notify_late_imports", ignore_result=True)
def notify_late_imports(import_ids: list[int]) -> None:
    """The notifications of late streaks beat noticed (schedules.dispatch)."""
    notifications.on_imports_late(import_ids)


@shared_task(
    name="importbeat.start_overdue_late_streaks", ignore_result=True, soft_time_limit=600,
    time_limit=660,
)  # fmt: skip
def start_overdue_late_streaks() -> list[int] | dict[str, Any]:
    """Sent by a worker that finds no beat ticking (project.beat_watch), at each of its looks:
    the imports overdue meanwhile turn late, and their owners hear it. Streaks left untold (a
    pass cut at its time limit: 10,000 imports took 151 s of its 600; its worker killed) are
    told at the next look: the streaks were started in one statement first, so the next pass
    found none to start, and only reconciliation, which beat schedules, told them."""

    def start_and_tell() -> list[int]:
        started = overdue.start_late_streaks()
        reconcile.tell_late_owners_not_told(database_clock.now())
        return started

    # Beat and the database both away (a host restarting): a traceback at each look, before.
    next_look = "the next pass comes at the worker's next look for beat"
    return maintenance.unless_the_database_is_out("late-streak pass", next_look, start_and_tell)


@shared_task(name="importbeat.send_late_alert", ignore_result=True)
def send_late_alert(import_id: int) -> None:
    notifications.late_alert_of_import(import_id)


@shared_task(name="importbeat.deliver_notification", **NOTIFICATION_TASK)
def deliver_notification(self, delivery_id: int, seen: dict[str, Any] | None = None) -> None:
    """Send one notification (tasks.webhooks.deliver); a webhook that fails transiently is
    retried with capped, jittered backoff (STYLE rule 4), each attempt in the delivery log.
    `seen`: what this message saw when it came too early and asked again (webhooks.deliver)."""
    job = turns.Job(self.name, self.request.id, delivery_id, self.request.retries)
    # What it asks the database before it sends: a message taken while the database is away
    # goes back to the queue (SPEC 4), where it was acknowledged and gone, the notification
    # `pending` until the sweep's STALE_QUEUED_SECONDS (half an hour) later.
    what = f"notification {delivery_id}"
    with runner.database_or_requeue(what):
        in_turn = _turn_of(delivery_id, job, (self.request.headers or {}).get(turns.HANDED_ON))
    _send_notification(
        self,
        in_turn,
        # (its last attempt told by its log's count: webhooks.deliver)
        lambda _final: webhooks.deliver(
            delivery_id, started=runner.database_or_requeue(what), seen=seen
        ),
    )


def _retry(task: Any, later: webhooks.RetryLater) -> NoReturn:
    """Send the notification's retry for when `later` says. Celery drops the task when the
    broker cannot take that message (Reject, with a traceback in the worker log): the task
    ends in RETRY saying so, and the sweep sends it again once its next attempt is long due
    (notifications.resend_lost)."""
    # What a message that came too early saw goes with it (notifications.start); a failed
    # attempt's retry carries none (kwargs={}: Celery's retry keeps the message's own otherwise).
    seen = later.error.seen if isinstance(later.error, webhooks.NotificationWaits) else None
    kwargs = {"seen": seen} if seen else {}
    try:
        raise task.retry(
            countdown=later.countdown, max_retries=None, exc=later.error, kwargs=kwargs
        )
    except Reject as refused:
        broker = error_words.refused_or_unreachable("the broker", refused.reason, logger)
        raise Retry(
            f"{later} (its retry was not sent, {broker}: the sweep sends it again"
            f" {settings.STALE_QUEUED_SECONDS} s after it is due)",
            exc=later.error,
        ) from None


def _turn_of(
    delivery_id: int, job: turns.Job, handed_on_by: str | None
) -> AbstractContextManager[None] | None:
    """The turn a notification takes (tasks.turns): its owner's for a webhook, the mail
    relay's for an e-mail that goes out now; none for one the owner's digest holds or one
    gone, which passes on the turn kept for it when a hand-on sent it (`handed_on_by`)."""
    found = notifications.channel_and_owner(delivery_id)
    if found is not None:
        channel, owner_id, last_emailed_at = found
        if channel == "webhook":
            return turns.turn(turns.of_owner(owner_id), job)
        if email_digest.sends_now(last_emailed_at):
            return turns.turn(turns.MAIL, job, settings.EMAIL_CONCURRENCY)
    if handed_on_by is not None:
        turns.pass_on(handed_on_by, job)
    return None


def _send_notification(
    task: Any, in_turn: AbstractContextManager[None] | None, send: Callable[[bool], str | None]
) -> None:
    """`send(final)`, final once the retries are spent: a transient failure retried when it
    says (webhooks.RetryLater), one for good (what `send` answers) raised as
    NotificationFailed. Sent in its turn (`in_turn`, tasks.turns): parked when every turn is
    taken, the task ends in RETRY saying so (without a message of its own: the one that gives
    a turn back sends it again), and the notification comes back when one is free."""
    failed, transient = None, None
    try:
        with in_turn or nullcontext():
            try:
                failed = send(task.request.retries + 1 > webhooks.MAX_RETRIES)
            except webhooks.RetryLater as later:
                transient = later
    except turns.Parked as parked:
        raise Retry(str(parked), exc=parked) from None
    # Retried once the turn is given back, so that the next in line goes meanwhile.
    if transient is not None:
        _retry(task, transient)
    if failed:
        raise NotificationFailed(failed)
