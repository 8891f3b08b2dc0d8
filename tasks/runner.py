"""Execute one run: take the import's lease, claim the run, import, record the outcome.

The order matters. The lease (Redis, renewed while the run lives) decides which delivery of
which run may work on an import; the claim (a conditional UPDATE, STYLE rule 3) decides that
this delivery starts the next attempt; the database index `run_one_in_progress_per_import`
backs both up. A delivery that finds the lease taken either applies the import's overlap policy
(another run holds it) or comes back later (a previous attempt of this very run holds it: that
worker may have died, and its lease has to expire first).
"""

from __future__ import annotations

import functools
import logging
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any, NoReturn

import psycopg
from celery.exceptions import Reject, Retry, SoftTimeLimitExceeded
from celery.utils.time import get_exponential_backoff_interval
from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError, connection
from redis.exceptions import RedisError

from common import database_clock, error_words, read_only_database
from common.said_once import SaidOnce
from schedules import backlog, fresh_connection, services
from schedules.models import ImportRun, ScheduledImport

from . import deliveries, engine, fairness, lock_waits, locks
from .errors import (
    DatabaseLost,
    NothingToImport,
    PermanentImportError,
    RunCancelled,
    RunDeleted,
    RunFailed,
    TransientImportError,
    database_error,
    log_text,
)
from .lost_tasks import ENDED_BEFORE

logger = logging.getLogger("importbeat.runs")

# A lost database connection is a transient failure wherever it surfaces (the importer's COPY
# talks to psycopg directly, so psycopg's own error can arrive unwrapped).
DATABASE_ERRORS = (OperationalError, InterfaceError, psycopg.OperationalError)
# A message handed back because the database or Redis is unreachable waits this long first, so
# that a worker without them does not spin through the queue.
REQUEUE_PAUSE_SECONDS = 2.0
# The reason of a message handed back to the queue (worker log, Flower): no host, no port.
DATABASE_UNREACHABLE = "importbeat's database is unreachable; the message goes back to the queue"
# A server at its max_connections (or the role's CONNECTION LIMIT) is there, and busy: said as
# "unreachable", an operator looked for an outage (clients hunt).
DATABASE_FULL = (
    "importbeat's database has no free connection (it is at its connection limit); the message "
    "goes back to the queue"
)
REDIS_UNREACHABLE = (
    "importbeat's Redis (REDIS_URL, the run locks) is unreachable; the message goes back to the "
    "queue"
)
# A Redis that answers and refuses the login (its password changed while the worker runs, its
# ACL user switched off) is there: said "unreachable", an operator looked for an outage.
REDIS_REFUSES_THE_LOGIN = (
    "importbeat's Redis (REDIS_URL, the run locks) refuses the login: "
    f"{error_words.LOGIN_REFUSED}; the message goes back to the queue"
)


def redis_refuses_writes(refused: str) -> str:
    """The reason of a message handed back because importbeat's Redis answers and refuses the
    lease's write, `refused` saying why (error_words: it is full, a read-only replica). A full
    Redis was said "unreachable", an operator sent to look for an outage (words4 hunt)."""
    return (
        f"importbeat's Redis (REDIS_URL, the run locks) refuses writes: {refused}; the message "
        "goes back to the queue"
    )


# A hand-back's cause is said at once, then once a minute with how often it was met: a worker
# took each run again every REQUEUE_PAUSE_SECONDS while it lasted, and logged each time.
_handed_back = SaidOnce()


# A run whose time limit struck before its attempt began: a statement that waited for a lock
# another session held (an operator's open transaction on its row, a migration's on its table).
def waited_for_the_database(held_by: str = "") -> str:
    """Why a run's message goes back to the queue at its time limit, naming whose session held
    the lock when it is known (tasks.lock_waits.whose)."""
    whose = f": {held_by}" if held_by else ""
    return (
        f"its time limit struck while it waited for the database (a lock another session "
        f"holds{whose}); the message goes back to the queue"
    )


WAITED_FOR_THE_DATABASE = waited_for_the_database()
# The message of a run stopped by a bug: the owner cannot act on the error's class, the
# operators read the traceback kept with the run (and the worker's log).
INTERNAL_ERROR = (
    "the run stopped on an unexpected error in importbeat, not in the file; the details are "
    "kept for the operators"
)


def backoff_seconds(run: ImportRun) -> float:
    """base * 2^n with full jitter, capped: Celery's own formula, the import's numbers."""
    imp = run.scheduled_import
    return get_exponential_backoff_interval(
        factor=imp.retry_backoff_seconds,
        retries=max(run.attempts - 1, 0),
        maximum=imp.retry_backoff_max_seconds,
        full_jitter=True,
    )


def queue_poll_seconds() -> float:
    """How often a run of an `overlap: queue` import looks at the lease again."""
    return min(max(settings.RUN_LEASE_SECONDS / 3, 1.0), 10.0)


@contextmanager
def database_or_requeue(
    what: str, in_task: bool = True, given_up: Callable[[], None] | None = None
) -> Iterator[None]:
    """Hand the message being handled back to the queue if the database cannot be reached,
    takes no writes, or kept the task waiting (for a lock) past its time limit.

    For the part of a task before it changed anything: acknowledging the message would lose
    the work (a run never started, a tick never dispatched); given back, it waits for a worker
    that reaches the database (task_acks_late makes the rejection a requeue). Outside a task
    (`in_task` off: run_import in the foreground) the error simply propagates. `given_up` puts
    back, before the message goes, what a statement cancelled at the time limit may have done
    all the same (a cancel is not instant: the lock may go first).
    """
    try:
        yield
    except SoftTimeLimitExceeded as error:
        # Before the attempt (which ends its run timed out itself): the statement still waits
        # on, and kept on this process's connection it landed once the lock went, a claim
        # turning the run `running` with no worker. The task died on the exception meanwhile,
        # its run said nothing, and Flower showed SoftTimeLimitExceeded.
        if not in_task:
            raise
        _drop_broken_connection()
        # Whose session held it, where the run itself can say nothing (its row may be the one
        # held): "a lock another session holds" alone left the operator no lead.
        logger.warning("%s: %s", what, waited_for_the_database(lock_waits.whose()))
        if given_up is not None:
            given_up()
        raise Reject(WAITED_FOR_THE_DATABASE, requeue=True) from error
    except (DatabaseError, psycopg.Error) as error:
        # A standby or a read-only server answers and refuses the first write (the claim):
        # the same wait for a database that takes the work.
        if not in_task or not (
            isinstance(error, DATABASE_ERRORS) or read_only_database.refused(error)
        ):
            raise
        full = error_words.out_of_connections(error)
        hand_back(what, error, DATABASE_FULL if full else DATABASE_UNREACHABLE)


def hand_back(what: str, error: BaseException, reason: str = DATABASE_UNREACHABLE) -> NoReturn:
    """Give the message being handled back to the queue, after a pause, because `error` (the
    database's, or Redis's) keeps this worker from doing it now."""
    # The library's text (a host and port) is for the worker's log only; Redis's in words
    # (redis-py's "invalid username-password pair or user is disabled." for a refused login).
    said = error_words.redis_for_the_log(error) if isinstance(error, RedisError) else None
    words = said or log_text(error)
    # Folded by its cause, whichever run met it: the same outage, each run in turn.
    again = _handed_back.again(words)
    if again is None:
        logger.debug("%s goes back to the queue: %s", what, words)
    else:
        logger.warning("%s goes back to the queue: %s%s", what, words, again)
    if isinstance(error, (DatabaseError, psycopg.Error)):
        # A fresh session for the next try: one opened while the server was read-only may
        # stay read-only after it takes writes again.
        with suppress(DatabaseError):
            connection.close()
    time.sleep(REQUEUE_PAUSE_SECONDS)
    raise Reject(reason, requeue=True) from error


def execute(
    run_id: int, task: Any | None = None, kept: KeptState | None = None
) -> dict[str, Any] | None:
    """Run `run_id` in this process. `task` is the bound Celery task, or None in the foreground.

    Returns the run's summary (status and counts), None when there was nothing to do. `kept` is
    told whether the result backend may keep an earlier state of the task (KeptState).
    """
    kept = kept if kept is not None else KeptState()
    attempted: list[ImportRun] = []
    # The owner whose slot this delivery may give back (fairness.hand_on), once the run is
    # loaded; none when the run was parked in its owner's line.
    owner: list[int] = []
    try:
        result = _execute(run_id, task, attempted, owner, kept)
    except Reject:
        raise  # given back to the queue before it took a slot, or with its run still running
    except BaseException as error:
        later = _pending_retry(error)
        if later is not None:
            # Its lease released (_execute) and its slot given back, the retry goes, whatever
            # struck meanwhile (a time limit in the release or the hand-on replaced it: the
            # run said "retrying" and nothing carried it until reconciliation; review).
            try:
                _hand_on(task, owner, run_id)
            finally:
                raise later.publish(task, run_id) from later.cause
        # Come back later, or stopped by a bug.
        _hand_on(task, owner, run_id)
        raise
    # Finished, failed, timed out, cancelled, skipped, found over already, or its admission
    # given back: the owner's first parked run goes, whoever ends a run however it ends.
    _hand_on(task, owner, run_id)
    if task is not None and attempted:
        # Once the lease is released: the next run, sent now, must not find this one holding
        # it (overlap `skip` would skip it).
        deliveries.queue_next(attempted[0])
    return result


def _pending_retry(error: BaseException) -> RetryLater | None:
    """The retry `error` is, or the one it struck while it was on its way (its context)."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, RetryLater):
            return seen
        seen = seen.__context__
    return None


def _hand_on(task: Any | None, owner: list[int], run_id: int) -> None:
    """After a worker's delivery of run `run_id` of `owner`'s: its admission is over (a run
    that backs off, or comes back later, holds no slot), and the owner's first parked run is
    sent if a slot is free (tasks.fairness). A run in the foreground takes no worker slot."""
    if task is not None and owner:
        fairness.hand_on(owner[0], ended=run_id)


def _execute(
    run_id: int, task: Any | None, attempted: list[ImportRun], owner: list[int], kept: KeptState
) -> dict[str, Any] | None:
    """execute(), which is told of the run attempted here (in `attempted`, as it ended) and
    of its owner (in `owner`) unless it was parked in its owner's line."""
    with database_or_requeue(f"run {run_id}", task is not None):
        # With its import and the dataset it writes: the attempt reads all three.
        run = services.load_run(run_id)
    if run is None or not _message_of(run, task):
        _not_this_runs_message(run_id, run, task)
        if run is None and task is not None:
            # Deleted while it waited: a wait that Celery retried may have stored RETRY; a
            # parked run's REVOKED was stored by the deletion (revoked_tasks.show_revoked),
            # and a run no worker took has no state to end.
            kept.kept = bool(getattr(task.request, "retries", 0))
            raise StoppedBeforeDelivery(None)
        return None
    owner.append(run.scheduled_import.owner_id)
    kept.look_at(run, task)
    if run.status in ImportRun.FINAL_STATUSES:
        if task is not None and run.status == ImportRun.Status.CANCELLED:
            raise StoppedBeforeDelivery(summary(run))
        # Skipped while queued, or a duplicate delivery: the task says what the run is.
        return summary(run)
    with database_or_requeue(f"run {run_id}", task is not None):
        # A tick that waited for a worker while its import ran anyway (workers were away).
        waited = backlog.skip_if_ran_since(run)
    if waited is not None:
        return _skipped(run, waited)
    imp = run.scheduled_import
    lease: locks.Lease | None = locks.run_lease(imp.pk, run.pk)
    unleased = ""  # why a foreground run goes without its lease, said once it is claimed
    try:
        acquired = lease.acquire()
    except RedisError as error:
        if task is not None:
            # Acknowledged, the message would be lost with the run still `queued`, until
            # reconciliation sent it again half an hour later; given back, a worker with Redis
            # (or this one, once Redis answers) takes it.
            refused = error_words.refusal(error)
            if refused == error_words.LOGIN_REFUSED:
                reason = REDIS_REFUSES_THE_LOGIN
            elif refused is not None:
                reason = redis_refuses_writes(refused)  # full, or a read-only replica
            else:
                reason = REDIS_UNREACHABLE
            hand_back(f"run {run_id}", error, reason)
        # In the foreground (run_import) the database index keeps the run the only one of its
        # import in progress, and its heartbeat (_Heartbeat) keeps the sweep from taking it for
        # a lost worker's: without it, a run longer than two lease periods was sent to a worker
        # (whose Redis answers), which took it over while it ran here, two attempts at once.
        # Said once it is claimed: run_import looks again at each poll while it waits its turn
        # (overlap: queue), and said here it was said at each, of a run not running (fold5).
        unleased = error_words.redis_words("Redis", error)
        lease, acquired = None, True
    if not acquired:
        if locks.run_lease_holder(imp.pk) == run.pk:
            return _come_back(run, task, settings.RUN_LEASE_SECONDS, "an earlier attempt")
        return _overlap(run, task)

    renewer: locks.Renewer | None = None
    try:
        if task is not None and locks.attempt_alive(run):
            # Redis lost the lease of an attempt whose worker lives (a restart, from an older
            # snapshot a copy of the run's message with it): that attempt takes it again at
            # its next renewal, and keeps its owner's slot (not given back by this delivery).
            owner.clear()
            return _come_back(run, task, settings.RUN_LEASE_SECONDS, "its attempt in progress")
        before_claim = (
            functools.partial(_claim_given_up, run.pk, services.Unclaimed.of(run), task)
            if task is not None
            else None
        )
        with database_or_requeue(f"run {run_id}", task is not None, before_claim):
            if run.rows_committed_at is not None:
                # An earlier attempt committed the rows and was lost before it finished the run.
                services.finish_run(run, services.committed_status(run))
                return summary(run)
            if run.status == ImportRun.Status.RUNNING and run.cancel_requested_at is not None:
                # Asked to stop, then its worker died before a safe point (a file that kills
                # workers is what an owner cancels): it ends cancelled, as the sweep ends such a
                # run (services.recover_lost_run). It ended failed, counted in the streak when
                # out of attempts, and with attempts left fetched its file again first.
                words = services.cancel_requested(run.pk, imp.pk) or "cancelled"
                services.finish_run(run, ImportRun.Status.CANCELLED, error=words)
                return summary(run)
            stopped = (
                services.why_no_other_attempt(imp.pk)
                if run.status == ImportRun.Status.RUNNING
                else None
            )
            if stopped:
                # Its worker died, and its import was cancelled (or its owner's account
                # deactivated) since: no other attempt.
                services.finish_run(
                    run,
                    ImportRun.Status.CANCELLED,
                    error=f"{stopped} (the worker running attempt {run.attempts} was lost)",
                )
                return summary(run)
            if run.status == ImportRun.Status.RUNNING and run.attempts > imp.max_retries:
                # Its worker died on every attempt (a file that kills workers): stop here.
                services.finish_run(
                    run,
                    ImportRun.Status.FAILED,
                    error=f"the worker was lost during each of its {run.attempts} attempts",
                )
                return summary(run)
            if task is not None and not fairness.admit(run, task.request.hostname or ""):
                owner.clear()  # it holds no slot: the run that ends next sends it
                _parked(run)
            worker = (task.request.hostname if task is not None else "") or ""
            task_id = (task.request.id if task is not None else "") or ""
            # Holding the lease, a `running` run can only be an attempt whose worker is gone.
            claim = services.claim_run(run, task_id=task_id, worker=worker, reclaim=True)
            if claim != services.Claim.CLAIMED and task is not None:
                fairness.withdraw(run)
        if claim == services.Claim.GONE:
            logger.info("run not claimable run=%s status=%s", run.pk, run.status)
            return None
        if claim == services.Claim.BUSY:
            return _overlap(run, task)
        if unleased:
            logger.warning("run=%s runs without its import's lease (%s); the database keeps it "
                           "the only run of its import in progress", run.pk, unleased)  # fmt: skip
        renewer = locks.Renewer(
            lease or _Heartbeat(imp.pk), beat=lambda: services.heartbeat(run.pk, run.celery_task_id)
        )
        renewer.start()
        with database_or_requeue(f"run {run_id}", task is not None):
            # Only a database that stays away through finish_run's own retries gets here: the
            # redelivered message finishes the run (from its committed counts, if any).
            try:
                ended = _attempt(run, task, kept)
                attempted.append(run)
                return ended
            except ImportRun.DoesNotExist:
                # Deleted after its last safe point (finish_run found no run), or sent again by
                # the sweep while this attempt was alive (its run is under another task now).
                if services.note_sent_again_while_alive(run):
                    return _deleted(run, services.TAKEN_OVER_WHILE_RUNNING, noted=True)
                return _deleted(run, "it was deleted as it ended")
    finally:
        if renewer is not None:
            renewer.stop()
        if lease is not None:
            lease.release()


def _message_of(run: ImportRun, task: Any | None) -> bool:
    """Whether the message being handled is `run`'s own: sent under the task id the run
    keeps (every sender sends a run under its `celery_task_id`, and a retry keeps it).

    The run id alone does not say so. A database restored from a backup gives the ids of the
    runs created since the backup to new runs, while the broker still holds those runs'
    messages: such a message ran the new run under its own time limit and its own import's
    label, and took the run's task id over (restore hunt: another user's 2 s limit timed out a
    run of a 3,600 s import). The message of an attempt presumed lost, sent again under a new
    id (services.recover_lost_run), is no longer its run's either."""
    if task is None or not task.request.id or not run.celery_task_id:
        return True  # in the foreground; a run from before task ids were kept
    return task.request.id == run.celery_task_id


def _not_this_runs_message(run_id: int, run: ImportRun | None, task: Any | None) -> None:
    """Say why a message is dropped without doing anything: its run is gone, or it is not the
    run's message (_message_of). It is acknowledged: no delivery of it will find more."""
    if run is None:
        logger.info("run %s does not exist (deleted, or the database was restored from a "
                    "backup taken before it): its message is dropped", run_id)  # fmt: skip
        return
    logger.warning(
        "run %s is not this message's run: the message (task %s) is not its own (task %s), "
        "a message of an earlier run with this id (the database restored from a backup) or of "
        "an attempt sent again since; dropped, the run goes by its own message",
        run_id, task.request.id if task is not None else "", run.celery_task_id,
    )  # fmt: skip


def _claim_given_up(run_id: int, before: services.Unclaimed, task: Any) -> None:
    """The time limit struck as the run's claim waited for a lock, and its message goes back
    to the queue: a claim that landed all the same (the lock went before the cancel) is put
    back, and the owner's slot given back. The next delivery found the run `running` under a
    free lease and took it for a lost worker's: "the worker was lost during each of its 1
    attempts", of a run that never ran (review)."""
    try:
        run = ImportRun.objects.select_related("scheduled_import").filter(pk=run_id).first()
        if run is None:
            return
        fairness.withdraw(run)
        if services.unclaim(run, before, task.request.id or ""):
            logger.warning("run %s: its claim landed as its time limit struck; put back, "
                           "the run waits in the queue again", run_id)  # fmt: skip
    except DATABASE_ERRORS as error:
        logger.warning("run %s: its claim not looked at after its time limit: %s",
                       run_id, log_text(error))  # fmt: skip
    finally:
        _drop_broken_connection()


def summary(run: ImportRun) -> dict[str, Any]:
    """What the run's Celery task returns (Flower shows it): the run log's own words; and
    ENDED_BEFORE when its attempt found it ended by another (_finish)."""
    said = {
        "run_id": run.pk,
        "import_id": run.scheduled_import_id,
        "status": run.status,
        **{name: getattr(run, name) for name in services.COUNT_FIELDS},
        "error": run.error_message,
    }
    if getattr(run, "_ended_before", False):
        said[ENDED_BEFORE] = True
    return said


def _finish(run: ImportRun, status: str, **outcome: Any) -> ImportRun:
    """services.finish_run, `run` marked (ENDED_BEFORE in its summary) when it was ended
    already under this attempt's task: the sweep, its worker taken for lost, ended it and told
    Flower (finish_run leaves an ended run as it is)."""
    asked_at = database_clock.now()
    services.finish_run(run, status, **outcome)
    if run.finished_at is not None and run.finished_at < asked_at:
        run._ended_before = True  # type: ignore[attr-defined]
    return run


def task_result(result: dict[str, Any] | None) -> dict[str, Any] | None:
    """The task's state follows its run: a failed or timed-out run fails its task.

    Flower's task list and its Failed counter come from the task's state; a run the log calls
    failed must not show there as a success.
    """
    if result is not None and result["status"] in services.FAILED_STATUSES:
        raise RunFailed(f"run {result['run_id']} {result['status']}: {result['error']}")
    return result


def _attempt(run: ImportRun, task: Any | None, kept: KeptState) -> dict[str, Any]:
    try:
        return _attempt_once(run, task, kept)
    except SoftTimeLimitExceeded:
        # Struck while the attempt's failure was being recorded (its database away, each
        # write tried again on a new connection): it ends timed out, as one struck in the
        # engine does. It went back to the queue "waiting for a lock", the run `running`,
        # its redelivery a lost attempt with a new time budget (review).
        _drop_broken_connection()
        _finish(
            run, ImportRun.Status.TIMED_OUT,
            error=_time_limit_words(run.scheduled_import, task),
        )  # fmt: skip
        return summary(run)


def _attempt_once(run: ImportRun, task: Any | None, kept: KeptState) -> dict[str, Any]:
    imp = run.scheduled_import

    def progress(state: dict[str, int | None]) -> None:
        if task is not None and task.request.id:
            try:
                kept.kept = True  # (before: a write that timed out may have landed)
                task.update_state(state="PROGRESS", meta={"run_id": run.pk, **state})
            except Exception as error:
                # Progress is for Flower; a result backend that is away must not fail the run.
                logger.debug("progress not published run=%s: %r", run.pk, error)

    try:
        counts = engine.import_run(run, progress=progress)
    except SoftTimeLimitExceeded:
        _drop_broken_connection()
        _finish(
            run,
            ImportRun.Status.TIMED_OUT,
            error=_time_limit_words(imp, task) + lock_waits.noted(),
        )
    except RunDeleted as deleted:
        return _deleted(run, str(deleted))
    except RunCancelled as cancelled:
        _finish(run, ImportRun.Status.CANCELLED, error=str(cancelled))
    except NothingToImport as nothing:
        words = deliveries.nothing_delivered(imp, str(nothing))
        _finish(run, ImportRun.Status.SKIPPED, error=words)
    except (TransientImportError, *DATABASE_ERRORS) as caught:
        _drop_broken_connection()
        error = caught if isinstance(caught, TransientImportError) else database_error(caught)
        message = str(error)
        # Asked on a fresh connection while the database blinks: raised, the message went
        # back to the queue with the run `running`, and its redelivery said "the worker
        # running this attempt was lost" (out of attempts: "lost during each of its 1").
        cancelled = fresh_connection.on_a_fresh_connection(
            lambda: (
                services.cancel_requested(
                    run.pk, run.scheduled_import_id, task_id=run.celery_task_id
                )
                or services.why_no_other_attempt(run.scheduled_import_id)
            ),
            f"run={run.pk} not asked whether it was cancelled",
        )
        if cancelled == services.ENDED_WHILE_RUNNING:
            return _deleted(run, cancelled)  # taken for lost, and ended: nothing to write
        if cancelled:
            # Asked to stop: this failure is not another chance to run.
            _finish(run, ImportRun.Status.CANCELLED, error=f"{cancelled} ({message})")
        elif task is not None and run.attempts <= imp.max_retries:
            countdown = backoff_seconds(run)
            if not services.mark_retrying(run, message, countdown, traceback=_for_staff(error)):
                return summary(run)  # its rows had committed: finished from their counts
            shown = services.without_secrets(imp, message)
            if shown != message:
                # The server's words repeated the credential (a reason phrase, an SFTP status
                # message). Celery logs the retry's error and keeps it with its traceback
                # (Flower): it gets the words hidden, and not the original error behind them.
                raise RetryLater(countdown, TransientImportError(shown), cause=None) from None
            raise RetryLater(countdown, error, cause=caught) from caught
        if isinstance(error, DatabaseLost):
            message = f"{message}; {_not_retried(run, task)}"
        _finish(run, ImportRun.Status.FAILED, error=message, traceback=_for_staff(error))
    except PermanentImportError as error:
        _finish(run, ImportRun.Status.FAILED, error=str(error), traceback=_for_staff(error))
    except Exception:
        # An unexpected bug must still close the run, never leave it "running". Its message
        # is plain words (no class name, no SQL, no library internals); staff read the
        # traceback. A library's error may quote the file (a value PostgreSQL refused), and
        # the file may repeat the credential: the log's traceback goes without it, as the
        # run's does (finish_run).
        trace = traceback.format_exc()
        logger.error("run crashed run=%s\n%s", run.pk, services.without_secrets(imp, trace))
        _drop_broken_connection()
        _finish(run, ImportRun.Status.FAILED, error=INTERNAL_ERROR, traceback=trace)
    else:
        if run.status not in ImportRun.FINAL_STATUSES:  # else ended with its rows (merge)
            status = services.outcome_of(counts.rows_read, counts.rows_failed)
            _finish(run, status, counts=counts)
    return summary(run)


def _deleted(run: ImportRun, why: str, noted: bool = False) -> dict[str, Any]:
    """The run was deleted while it ran, with its import or alone (the admin): there is no run
    left to end, and the task says what became of it (Flower) as it would of a cancelled one.
    Before, the worker logged a crash with a traceback and Flower showed the task failed in
    PostgreSQL's words (the dataset's foreign key to the deleted run).

    Or it was taken over, or ended under it: the sweep sent it again, or failed it, this
    attempt presumed lost, and the run log says on this attempt's entry that it was alive and
    stopped (`noted` already)."""
    if why in (services.TAKEN_OVER_WHILE_RUNNING, services.ENDED_WHILE_RUNNING) and not noted:
        try:
            services.note_sent_again_while_alive(run)
        except DATABASE_ERRORS as error:
            logger.warning("run %s: its attempt sent again while alive not noted: %s",
                           run.pk, log_text(error))  # fmt: skip
    run.status, run.error_message = ImportRun.Status.CANCELLED, why
    logger.info("run finished import=%s run=%s status=cancelled: %s",
                run.scheduled_import_id, run.pk, why)  # fmt: skip
    return summary(run)


def _not_retried(run: ImportRun, task: Any | None) -> str:
    """Why a transient failure ends the run: what the owner can expect next."""
    if task is None:
        return "a run started in the foreground (run_import) is not retried"
    retries = run.scheduled_import.max_retries
    if not retries:
        return "the import allows no retries"
    return f"it is not retried: its {retries} retries are used up"


def _for_staff(error: BaseException) -> str:
    """The traceback of a failure whose message could not name what went wrong (a library's
    error of a kind tasks.fetch_errors does not know, a lost database connection: psycopg's
    text, with the database's address), for staff; "" otherwise."""
    if not getattr(error, "unexplained", False):
        return ""
    return "".join(traceback.format_exception(error))


def _overlap(run: ImportRun, task: Any | None) -> dict[str, Any] | None:
    """Another run of the import is in progress: skip this one, or wait for the lease."""
    imp: ScheduledImport = run.scheduled_import
    if run.status != ImportRun.Status.QUEUED:
        # A retry of a run that already started is never skipped; it waits its turn.
        return _come_back(run, task, queue_poll_seconds(), "another run")
    other = (
        imp.runs.filter(status__in=ImportRun.ACTIVE_STATUSES)
        .exclude(pk=run.pk)
        .exclude(status=ImportRun.Status.QUEUED)
        .values_list("pk", flat=True)
        .first()
    ) or locks.run_lease_holder(imp.pk)
    # The run holding the lease may end between the look at the lease and this one: it said
    # "waits for run None" (a CI run), in Flower and the run's words.
    holder = f"run {other}" if other else "another run"
    # In the foreground (run_import) too: the command looks again (it skipped at once).
    if imp.overlap == ScheduledImport.Overlap.QUEUE:
        waited = (database_clock.now() - run.queued_at).total_seconds()
        if waited < imp.timeout_seconds:
            # It said nothing: `queued`, no word, for up to its import's whole timeout.
            services.note_waiting(
                run,
                f"{holder} of this import is in progress (overlap: queue; skipped if it "
                f"still waits {imp.timeout_seconds}s after it was queued)",
            )
            return _come_back(run, task, queue_poll_seconds(), holder)
        reason = (
            f"skipped: waited {waited:.0f}s for {holder} of this import, longer than its "
            f"{imp.timeout_seconds}s timeout"
        )
    else:
        reason = f"skipped: {holder} of this import was in progress"
    if services.skip_run(run, reason):
        return _skipped(run, reason)
    # No longer queued (cancelled meanwhile): the task says what the run log says. It said
    # `skipped` of a run the API and the admin called cancelled (endings hunt).
    ended = ImportRun.objects.filter(pk=run.pk, status__in=ImportRun.FINAL_STATUSES).first()
    if ended is not None and task is not None and ended.status == ImportRun.Status.CANCELLED:
        # As a run cancelled a moment earlier ends: REVOKED, which its SUCCESS overwrote in
        # Flower (review2).
        raise StoppedBeforeDelivery(summary(ended))
    return summary(ended) if ended is not None else None


def _skipped(run: ImportRun, reason: str) -> dict[str, Any]:
    return {"run_id": run.pk, "import_id": run.scheduled_import_id,
            "status": ImportRun.Status.SKIPPED, "error": reason}  # fmt: skip


def _come_back(run: ImportRun, task: Any | None, countdown: float, holder: str) -> None:
    """Deliver this message again later: the run waits for `holder` (the run holding its
    import's lease). A run over its owner's cap waits in its owner's line instead (_parked)."""
    if task is None:
        logger.info("run not started run=%s: it waits for %s", run.pk, holder)
        return None
    logger.info("run waits run=%s for %s; again in %.0fs", run.pk, holder, countdown)
    # Celery delivers a message again later by a retry, which Flower shows as RETRY: its
    # exception says that the run waits, and for whom (it said 'None', read as a failed
    # attempt that never happened). The run's attempts are the run log's own.
    words = f"run {run.pk} waits for {holder} (not an attempt); asked again in {countdown:.0f}s"
    raise task.retry(exc=RunWaits(words), countdown=countdown, max_retries=None)


def _parked(run: ImportRun) -> NoReturn:
    """End the task of a run parked in its owner's line (fairness.admit) without a message of
    its own: a run of the owner that ends sends it again, under its id. Its task ends in RETRY
    (as Celery's retry shows in Flower), its exception saying why and that it is no attempt.
    It came back as a Celery retry every few seconds before: one owner's thousands of runs over
    the cap were a churn of messages every other user's run waited behind."""
    words = (
        f"run {run.pk} is waiting its turn: its owner's runs are at MAX_RUNNING_PER_OWNER "
        f"({settings.MAX_RUNNING_PER_OWNER}) (not an attempt); parked in its owner's line, "
        "sent again when one of them ends"
    )
    logger.info("run waits run=%s in its owner's line", run.pk)
    raise Retry(words, exc=RunWaits(words))


def _time_limit_words(imp: ScheduledImport, task: Any | None) -> str:
    timelimit = getattr(task.request, "timelimit", None) if task is not None else None
    return services.time_limit_words(imp, timelimit[1] if timelimit else None)


class _Heartbeat:
    """The lease a foreground run could not take (Redis away, or refusing its login), renewed
    as nothing: its renewals write the run's heartbeat all the same (locks.Renewer)."""

    def __init__(self, import_id: int) -> None:
        self.name, self.ttl = f"import {import_id} (no lease)", settings.RUN_LEASE_SECONDS

    def renew(self) -> bool:
        return True


class RetryLater(Exception):
    """A retry of the run, published by execute() once the attempt has let go of its import's
    lease and its owner's slot. Published from inside the attempt, a retry due in 0 s (full
    jitter draws it about once in 31 first retries) reached an idle worker before the lease
    was released, and waited a whole lease (60 s) "for an earlier attempt" while the run said
    "retrying in 0s"; and a fast second attempt's SUCCESS reached Flower before the first's
    RETRY, which Flower kept for good (chaos hunt)."""

    def __init__(self, countdown: float, error: BaseException, cause: BaseException | None) -> None:
        super().__init__(str(error))
        self.countdown, self.error, self.cause = countdown, error, cause

    def publish(self, task: Any, run_id: int) -> Retry:
        """The message sent again, in `countdown` seconds; Celery's Retry to raise.

        When the broker refuses the message (full, read-only, away), Celery drops the task with
        a Reject and a traceback in the log, and the run said "retrying in 30s" of a retry that
        was never coming (reconciliation sends it, but the run said nothing of it): the run
        says so now, and the task ends in RETRY with the same words."""
        try:
            return task.retry(
                countdown=self.countdown, max_retries=None, exc=self.error, throw=False
            )
        except Reject as refused:
            broker = error_words.refused_or_unreachable("the broker", refused.reason, logger)
            note = services.note_retry_not_sent(run_id, broker)
            return Retry(f"{self.error} ({note})", exc=self.error)


class KeptState:
    """Whether the result backend may keep a state of a run's task from before the run ended:
    a RETRY (the run waited its turn, for its import's lease, or for the retry of a failed
    attempt) or a PROGRESS (an attempt that lasted). The task's end then replaces it
    (tasks.tasks.execute_run): a run that waited and succeeded kept saying "waiting its turn"
    for CELERY_RESULT_EXPIRES, in Flower's result page and to AsyncResult. A run that never
    waited and ended within VISIBLE_AFTER_SECONDS stored nothing, and its end stores nothing
    either (issue 15: no Redis write of a small run's result)."""

    def __init__(self) -> None:
        self.kept = False

    def look_at(self, run: ImportRun, task: Any | None) -> None:
        """The run as its delivery loaded it: a Celery retry (a wait for the lease, a failed
        attempt's retry), an earlier attempt (its progress; its worker lost) or a note (waiting
        its turn, parked: a hand-on sends it again as a new message) each may have left one."""
        retries = getattr(getattr(task, "request", None), "retries", 0) or 0
        # A note while it waits (waiting its turn, parked); a run ended while queued keeps its
        # end's words there ("cancelled ...", "skipped ..."), and whoever ended it stored its
        # end when a worker had touched it (revoked_tasks.show_revoked).
        waits = run.status not in ImportRun.FINAL_STATUSES and bool(run.error_message)
        if task is not None and (retries or run.attempts or waits):
            self.kept = True


class StoppedBeforeDelivery(Exception):
    """The message of a run cancelled, or deleted, while it waited (queued, in its backoff,
    parked): its task stays REVOKED in Flower (tasks.tasks.execute_run). `summary`: the run
    as it ended; None when it is gone."""

    def __init__(self, summary: dict[str, Any] | None) -> None:
        super().__init__("the run was cancelled or deleted before its message came")
        self.summary = summary


class RunWaits(Exception):
    """What a run waiting for its turn tells Flower at each look (_come_back), or once, parked
    in its owner's line (_parked)."""


def _drop_broken_connection() -> None:
    """Close this thread's database connection if it died, so the next query reconnects.

    Django reconnects only at request boundaries; a worker recording a failure right after
    PostgreSQL dropped it would otherwise fail on the same dead connection.
    """
    raw = connection.connection
    if raw is None:
        return
    # A statement still in progress (a COPY an error interrupted) would make the usability
    # probe wait forever for the end of it.
    busy = raw.info.transaction_status == psycopg.pq.TransactionStatus.ACTIVE
    if busy:
        # Its statement is asked to stop first: psycopg cancels one on KeyboardInterrupt alone
        # (a time limit's exception is none), and PostgreSQL notices a closed connection only
        # at its next look (project.worker_connections).
        with suppress(psycopg.Error, OSError):
            raw.cancel_safe(timeout=5)
    if busy or not connection.is_usable():
        connection.close()
