"""The task of an attempt whose worker died, ended in Flower by the sweep that resolved its run.

Flower shows a task's state from the events its worker sends. A worker killed mid-run (SIGKILL,
a host gone) sends none, so the lost attempt's task stayed STARTED for ever beside the run's
next task: an import that looked still running, and nothing tying the task to the run, whose
`celery_task_id` names the task sent again. The sweep, which tells the lost run from a slow one,
sends the event the dead worker could not: FAILURE with the run's words when the attempt failed
(the run sent again, failed or timed out), SUCCESS with its status when its rows had committed
(or it was cancelled), as the runner's own task would have ended (tasks.runner).

A worker the sweep took for lost may be alive after all (paused, cut off for a while): its
attempt stops when it is heard from again, its run ended or sent again under it. Its task then
ended SUCCESS ("cancelled: its run was ended while it ran"), which Flower let overwrite the
FAILURE the sweep had told, and counted a second end of the run (flowerend hunt). It now ends as
the sweep told it, without telling it again (told_when_taken_for_lost).

Whether the sweep's event left is noted on the run (services.LOST_TASK_END). One that could
not (the broker away at that moment) left the attempt's task STARTED in Flower for good, its
attempt, stopped, telling nothing as if told: that attempt now tells the run's end itself. And
a run its owner cancelled, which the sweep ended (and told SUCCESS) while its worker was
silent, counted a second SUCCESS when its attempt stopped in the owner's words: it is now
ended without one (sweep3 hunt).

A worker truly dead while the broker was away at the sweep's pass leaves nobody to tell it: the
next sweep tells each such end (tell_untold_ends). The sweep stores the end in the result
backend too, where the attempt's PROGRESS stayed a day; and an attempt that finds its run ended
under its own task when it comes to end it (its rows committed, the sweep finished it while the
worker was paused) tells no second end (ENDED_BEFORE) (sweep4 hunt).

That store waited CELERY_REDIS_SOCKET_TIMEOUT (10 s, and Celery's retries on top) on a result
backend that accepts connections and never answers, once per lost task: a dozen of them, and the
sweep's soft time limit ended the pass, its parked lines, notifications and credentials never
reached. The stores of one pass now share one bounded wait (EndStore), and the ends not stored
are said in one line in words (sweep5 hunt).

An end told to Flower that the result backend was not told (it was away or silent at that pass)
was stored by no later pass: the task said PROGRESS there for a day. The run notes it
(services.note_lost_task_end_stored), and the next passes store it (store_unstored_ends), through
the same bounded client as a cancel's stores (common.result_backend) (results3 hunt).
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timedelta
from typing import Any

from celery.exceptions import Ignore, SoftTimeLimitExceeded
from django.conf import settings
from django.db import DatabaseError, connection
from django.db.models import Q, QuerySet
from kombu.exceptions import KombuError
from redis.exceptions import RedisError

from common import database_clock, error_words, result_backend
from schedules import revoked_tasks, services
from schedules.models import ImportRun
from schedules.services import EXECUTE_RUN

from .errors import RunFailed

logger = logging.getLogger("importbeat.maintenance")

# Said in the summary of an attempt that found its run ended under its own task when it came to
# end it (tasks.runner._finish): the sweep took its worker (paused) for lost after its rows
# committed, finished the run and told Flower SUCCESS; the attempt, heard from again, ended
# nothing and told SUCCESS again, two for one run (sweep4 hunt). Only such a task reads how its
# end was told: a small run's end reads nothing more.
ENDED_BEFORE = "ended_before"


def end_lost_task(
    task_id: str,
    run: ImportRun,
    reporter: str,
    failed_as: str | None = None,
    store: EndStore | None = None,
) -> bool:
    """Send the final event of `task_id`, the lost attempt of `run` (as resolved by the sweep),
    from the worker `reporter` (Flower counts the task there: the dead one would look alive),
    and say on the run whether it left: its attempt, should it be alive after all, ends its
    task by it (told_when_taken_for_lost). Its end is stored in the result backend too, through
    `store` (a pass's, which says at its end what it could not store), or one of its own.
    `failed_as`: the words of an attempt that failed, its run sent again and since ended
    (tell_untold_ends). Whether the event left."""
    from celery import current_app

    if not task_id:
        return True
    ended_well, words = _end_of(run, failed_as)
    told = True
    try:
        with current_app.events.default_dispatcher(hostname=reporter) as dispatcher:
            if ended_well:
                result = {"run_id": run.pk, "status": run.status, "rows_read": run.rows_read}
                dispatcher.send("task-succeeded", uuid=task_id, result=repr(result), runtime=0.0)
            else:
                dispatcher.send("task-failed", uuid=task_id, exception=words, traceback="")
    except (KombuError, RedisError, OSError) as error:
        told = False
        logger.warning("the lost task %s of run %s could not be ended in Flower: %s",
                       task_id, run.pk, error)  # fmt: skip
    except SoftTimeLimitExceeded:
        # The sweep's limit, struck in a silent broker's wait: noted untold, the next pass
        # tells it (with no note, nobody ever did: reviewD hunt).
        _note_told(task_id, run, False, reporter)
        raise
    # Noted before the store: the sweep's time limit, struck in a silent backend's wait, ends
    # the pass there, and a note skipped with it left an end the broker refused told by nobody,
    # or an attempt alive after all telling a second one (reviewD hunt).
    _note_told(task_id, run, told, reporter)
    own_store = store is None
    store = store or EndStore()
    stored = False
    try:
        stored = store.end(task_id, run, ended_well, words)
    finally:
        # A told end not stored is stored by a later sweep (store_unstored_ends); one untold is
        # stored when it is told (tell_untold_ends). Noted also when the time limit struck in
        # the store's wait.
        if told and not stored:
            _note_stored(task_id, run, False)
        if own_store:
            store.say()  # (also when the time limit strikes in its wait)
    return told


def _end_of(run: ImportRun, failed_as: str | None) -> tuple[bool, str]:
    """Whether the lost attempt of `run` ended well (its rows committed, or its run cancelled),
    and its end's words: `failed_as` for one that failed, its run sent again and since ended."""
    ended_well = (
        failed_as is None
        and run.status in ImportRun.FINAL_STATUSES
        and run.status not in run.FAILED_STATUSES
    )
    return ended_well, failed_as or _words(run)


def _note_stored(task_id: str, run: ImportRun, stored: bool) -> None:
    try:
        services.note_lost_task_end_stored(run.pk, task_id, stored)
    except DatabaseError as error:
        logger.warning("run %s: whether its lost task %s's end was stored not noted: %s",
                       run.pk, task_id, error)  # fmt: skip


def _note_told(task_id: str, run: ImportRun, told: bool, reporter: str) -> None:
    try:
        services.note_lost_task_end(run.pk, task_id, told, reporter)
    except DatabaseError as error:
        logger.warning("run %s: whether its lost task %s was ended in Flower not noted: %s",
                       run.pk, task_id, error)  # fmt: skip


class EndStore:
    """The result backend's writes of the lost tasks' ends of one sweep pass, bounded together:
    each end in one write, as Celery stores a task's end (its SUCCESS kept, a FAILURE kept
    `result_backend_failure_expires`), on a client that waits STORE_WAIT_SECONDS to connect and
    for each answer, without retries, and none begun once STORE_BOUND_SECONDS are spent waiting
    on it or one failed (the backend away or silent: the next would wait as long). Each end
    stored replaces the attempt's PROGRESS (or a wait's RETRY), kept a day (sweep4 hunt); one
    not stored keeps it until it expires, the run log having the end. `say()` tells those in
    one line."""

    def __init__(self) -> None:
        # Only the time spent waiting on the backend counts: the pass's own work between its
        # stores (the database's) is no sign of a silent backend.
        self.spent = 0.0
        self.not_stored: list[int] = []
        self.why: str | None = None
        # Set once a store waited its whole wait and failed (a silent backend, or one that
        # cannot be reached): the next would wait as long, so none is begun.
        self.silent = False
        # The runs whose end this pass tried to store: store_unstored_ends, later in the pass,
        # does not try one again.
        self.tried: set[int] = set()

    def end(self, task_id: str, run: ImportRun, ended_well: bool, words: str) -> bool:
        """Store the end of `task_id`, the lost attempt of `run`: SUCCESS with its summary when
        `ended_well`, else FAILURE in `words` (without a traceback). Whether it was stored."""
        from celery import current_app, states

        self.tried.add(run.pk)
        if not self.silent and self.spent > STORE_BOUND_SECONDS:
            self.silent = True
            self.why = self.why or f"not done within {STORE_BOUND_SECONDS:g} s"
        if self.silent:
            self.not_stored.append(run.pk)
            return False
        backend = result_backend.bounded(current_app.backend)
        # Each answer's wait is bounded by the socket's timeout, not an answer trickled a byte
        # at a time (a Redis slower than its link, a proxy): one store waited 34 s for 42 bytes
        # at 0.8 s each, the pass at the mercy of its soft time limit (reviewA hunt). A store
        # still waiting STORE_BOUND_SECONDS after it began has its connections cut.
        cut = _Cut(backend)
        started = time.monotonic()
        try:
            if ended_well:
                result = {"run_id": run.pk, "status": run.status, "rows_read": run.rows_read}
                backend.store_result(task_id, result, states.SUCCESS)
            else:
                backend.mark_as_failure(task_id, RunFailed(words), traceback="")
        except SoftTimeLimitExceeded:
            # The sweep's limit, raised in the backend's wait: it ends the pass, which went on
            # past it to the hard limit that kills its process when taken for a backend's error.
            # This end is said with the others (the pass says them as it ends): it was said by
            # nobody, the pass's line never reached (reviewA hunt).
            self.not_stored.append(run.pk)
            self.why = self.why or "the sweep's time limit struck while it waited"
            self.silent = True
            raise
        except Exception as error:  # (whatever the backend raises: the run log has the end)
            waited = time.monotonic() - started
            self.not_stored.append(run.pk)
            why = error_words.refusal(error) or error_words.reason(error)
            if cut.done:
                why = f"it did not answer within {STORE_BOUND_SECONDS:g} s"
            elif why == "timed out":
                why = f"it did not answer within {STORE_WAIT_SECONDS:g} s"
            elif why == error_words.UNKNOWN:
                # Its own text (an answer no words know: WRONGTYPE, say): the line said "the
                # reason is in the log", where only a DEBUG line had it (reviewA hunt).
                why = error_words.log_text(error)
            self.why = self.why or why
            # Only a failure that waited stops the rest: one that came at once (a connection a
            # restarted Redis closed, a failover's refusal) costs the next store nothing, and
            # skipping them left every later end of the pass unstored for good, since no later
            # pass stores an end it told (reviewA hunt).
            if waited >= STORE_WAIT_SECONDS / 2:
                self.silent = True
            logger.debug("result backend: %s: %s", type(error).__name__,
                         error_words.log_text(error))  # fmt: skip
            return False
        finally:
            cut.cancel()
            self.spent += time.monotonic() - started
        return True

    def say(self) -> None:
        """One WARNING line for the ends not stored, if any."""
        if not self.not_stored:
            return
        runs = ", ".join(str(pk) for pk in sorted(self.not_stored))
        logger.warning("the result backend was not told the end of %s lost tasks (runs %s: %s); "
                       "their tasks show their last state there until a later sweep stores it, "
                       "and the run log has each end", len(self.not_stored), runs,
                       self.why)  # fmt: skip


class _Cut:
    """Cuts the connections of `backend`'s client (a Redis backend's) STORE_BOUND_SECONDS from
    now, unless cancelled before: the wait it is in ends at once, in a connection error."""

    def __init__(self, backend: Any) -> None:
        self.done = False
        pool = getattr(getattr(backend, "client", None), "connection_pool", None)
        self.timer = threading.Timer(STORE_BOUND_SECONDS, self._cut, args=(pool,))
        self.timer.daemon = True
        if pool is not None:
            self.timer.start()

    def _cut(self, pool: Any) -> None:
        self.done = True
        pool.disconnect()

    def cancel(self) -> None:
        self.timer.cancel()


# How long one store waits for each answer, and one pass's stores in all, as a cancel's stores
# wait (schedules.revoked_tasks, through the same client: common.result_backend): Celery's own
# client waited CELERY_REDIS_SOCKET_TIMEOUT (10 s), with redis-py's and its own retries on top, on
# a Redis that accepts connections and never answers, once per lost task, until the sweep's soft
# time limit (120 s) ended the pass.
STORE_WAIT_SECONDS = result_backend.STORE_WAIT_SECONDS
STORE_BOUND_SECONDS = result_backend.STORE_BOUND_SECONDS


# How long after its end a lost attempt's untold end is still told (tell_untold_ends). The
# scan reads the index of the untold ends alone (schedules.models run_lost_end_untold_idx),
# whenever their runs were queued: bounded to runs queued in the last 6 h, it walked the
# queued_at index through all of those hours' runs (4,845 buffers, 87 ms at 20,800 runs an
# hour; now 7 buffers, 0.06 ms: tests/bench/bench_untold_lost_ends_at_scale.py) and never told
# the end of a run queued before, a long import's, whose task stayed STARTED in Flower and the
# result backend for good (sweep5 hunt).
UNTOLD_ENDS_WITHIN_SECONDS = 1800
UNTOLD_ENDS_PER_PASS = 100


def untold_ends(now: datetime) -> QuerySet[ImportRun]:
    """The runs whose lost attempt's end nobody told yet (services.LOST_TASK_END told false),
    ended within UNTOLD_ENDS_WITHIN_SECONDS of `now` or not ended (sent again), whenever they
    were queued: read from their own index (schedules.models run_lost_end_untold_idx), whose
    condition this one says word for word (the planner reads a partial index only then)."""
    return (
        ImportRun.objects.filter(error_details__contains={services.LOST_TASK_END: {"told": False}})
        # (a run sent again: not ended yet, or ended by a later attempt)
        .filter(
            Q(finished_at__gte=now - timedelta(seconds=UNTOLD_ENDS_WITHIN_SECONDS))
            | Q(finished_at__isnull=True)
        )
        .order_by()
    )


def tell_untold_ends(reporter: str, store: EndStore | None = None) -> int:
    """Tell Flower the end of each lost attempt's task whose event could not leave when the
    sweep ended it (the broker away at that moment, services.LOST_TASK_END told false), ended
    lately: its worker, truly dead, never comes back to tell it, and its task stayed STARTED for
    good. Stored in the result backend through `store` (the pass's), or one of its own. How many
    were told."""
    untold = untold_ends(database_clock.now())[:UNTOLD_ENDS_PER_PASS]
    told = 0
    own_store = store is None
    store = store or EndStore()
    try:
        for run in untold:
            task_id = run.error_details[services.LOST_TASK_END].get("task") or ""
            if not task_id:
                continue
            # (taken, or another sweep, or the attempt alive after all, tells it: reviewC hunt)
            if not services.claim_lost_task_end(run.pk, task_id, reporter):
                continue
            # Sent again: its attempt failed, whatever became of the run since.
            failed_as = _sent_again_words(run, task_id) if run.celery_task_id != task_id else None
            told += end_lost_task(task_id, run, reporter, failed_as, store)
    finally:
        if own_store:
            store.say()  # (also when the time limit strikes in its wait)
    return told


def unstored_ends(now: datetime) -> QuerySet[ImportRun]:
    """The runs whose lost attempt's end Flower was told and the result backend not
    (services.LOST_TASK_END stored false), ended within CELERY_RESULT_EXPIRES of `now` (the
    attempt's PROGRESS it would replace has expired since) or not ended: read from their own
    index (schedules.models run_lost_end_unstored_idx), whose condition this one says word for
    word."""
    kept = timedelta(seconds=settings.CELERY_RESULT_EXPIRES)
    return (
        ImportRun.objects.filter(
            error_details__contains={services.LOST_TASK_END: {"stored": False}}
        )
        .filter(Q(finished_at__gte=now - kept) | Q(finished_at__isnull=True))
        .order_by()
    )


def store_unstored_ends(store: EndStore) -> int:
    """Store in the result backend the end of each lost attempt's task told to Flower that an
    earlier pass could not store (the backend away or silent then): the task kept its PROGRESS
    (or a wait's RETRY) there for a day, AsyncResult and Flower's result page saying the import
    still went on, where Flower's events and the run log had its end; no later pass stored it
    (results3 hunt). Through `store`, the pass's: not one this pass tried already. How many
    were stored."""
    stored = 0
    for run in unstored_ends(database_clock.now())[:UNTOLD_ENDS_PER_PASS]:
        task_id = run.error_details[services.LOST_TASK_END].get("task") or ""
        if not task_id or run.pk in store.tried:
            continue
        # As tell_untold_ends words it: sent again, its attempt failed whatever became of the run.
        failed_as = _sent_again_words(run, task_id) if run.celery_task_id != task_id else None
        # Stored twice by two sweeps at once, it is the same end: no claim is taken.
        if store.end(task_id, run, *_end_of(run, failed_as)):
            _note_stored(task_id, run, True)
            stored += 1
    return stored


def _sent_again_words(run: ImportRun, task_id: str) -> str:
    """What the attempt `task_id` of `run`, sent again by the sweep, failed with."""
    details = run.error_details if isinstance(run.error_details, dict) else {}
    for entry in details.get("attempts", []):
        if entry.get("task") == task_id and "sent_again" in entry:
            return f"run {run.pk}: {entry.get('error')}; {entry['sent_again']}"
    return f"run {run.pk}: the worker running this attempt was lost; the run was sent again"


class ToldFailed(RunFailed):
    """The run's task failed, and Flower was told so already by whoever ended the attempt: its
    worker sends no `task-failed` of its own (project.task_class), as Flower counts events."""

    told = True


def told_when_taken_for_lost(
    task_id: str, run_id: int, result: dict[str, Any] | None
) -> RunFailed | Ignore | None:
    """How the task `task_id` ends, its attempt of run `run_id` stopped alive (`result`, the
    runner's) after the sweep took it for lost and told Flower its end: failed in the run's words
    (the sweep ended the run as lost, or sent it again), or ignored (the sweep cancelled the run
    and told SUCCESS, its owner's cancel or its import's); None when nobody told it (another run
    under its id after a database restore, or any other end): the task tells its own end. When
    the sweep's event did not leave (services.LOST_TASK_END), the task tells the run's end
    itself: a failure, its worker sends (RunFailed), or its own SUCCESS."""
    why = (result or {}).get("error")
    if (result or {}).get(ENDED_BEFORE):
        return _as_told(task_id, run_id)
    taken = why in (services.ENDED_WHILE_RUNNING, services.TAKEN_OVER_WHILE_RUNNING)
    # Stopped in its owner's words (services.cancel_requested), the run maybe ended by the sweep
    cancelled = isinstance(why, str) and why.startswith("cancelled") and not taken
    if not (taken or cancelled):
        return None
    try:
        run = ImportRun.objects.filter(pk=run_id).first()
    except DatabaseError as error:
        logger.warning("run %s: how its task %s was ended not read: %s", run_id, task_id, error)
        return None
    if run is None:
        return None
    told = _telling(run, task_id)
    if cancelled:
        # Ended by the sweep, which told SUCCESS: a second one counted two ends of one run.
        if told and run.celery_task_id == task_id and run.status == ImportRun.Status.CANCELLED:
            return Ignore()
        return None
    if why == services.ENDED_WHILE_RUNNING:
        if run.celery_task_id != task_id or run.status not in ImportRun.FINAL_STATUSES:
            return None
        if run.status not in run.FAILED_STATUSES:
            return None if told is False else Ignore()
        return RunFailed(_words(run)) if told is False else ToldFailed(_words(run))
    details = run.error_details if isinstance(run.error_details, dict) else {}
    for entry in details.get("attempts", []):
        if entry.get("task") == task_id and "sent_again" in entry:
            words = _sent_again_words(run, task_id)
            return RunFailed(words) if told is False else ToldFailed(words)
    return None


def _as_told(task_id: str, run_id: int) -> RunFailed | Ignore | None:
    """The end of `task_id`, whose attempt found run `run_id` ended under it: as the sweep told
    it (ignored, or failed without a second event), or told by the task when its event did not
    leave or nobody noted one (ended otherwise: the task tells its own end)."""
    try:
        run = ImportRun.objects.filter(pk=run_id, celery_task_id=task_id).first()
    except DatabaseError as error:
        logger.warning("run %s: how its task %s was ended not read: %s", run_id, task_id, error)
        return None
    if run is None or run.status not in ImportRun.FINAL_STATUSES:
        return None
    told = _telling(run, task_id)
    if run.status not in run.FAILED_STATUSES:
        return Ignore() if told else None
    return ToldFailed(_words(run)) if told else RunFailed(_words(run))


def _telling(run: ImportRun, task_id: str) -> bool | None:
    """services.lost_task_end_told, the telling taken when nobody told the end: the attempt then
    tells it, and the next sweep does not (tell_untold_ends), where both told it (reviewC hunt).
    True when a sweep took it meanwhile."""
    told = services.lost_task_end_told(run, task_id)
    if told is False and not services.claim_lost_task_end(run.pk, task_id, "its attempt"):
        return True
    return told


def _words(run: ImportRun) -> str:
    if run.status in ImportRun.FINAL_STATUSES:
        return f"run {run.pk} {run.status}: {run.error_message}"
    return f"run {run.pk}: {run.error_message} as task {run.celery_task_id}"


def end_retried_task(
    task_name: str, task_id: str, args: Any, reporter: str, in_background: bool = True
) -> None:
    """After a task announced its retry (RETRY in Flower), if it is a run's and the run has
    ended already: its final state again, as `reporter` (the worker that announced the retry).

    The retried message can reach another worker, which runs and ends the run before this
    worker's `task-retried` event leaves (the run's second attempt is fast, the first worker's
    main process slow to send): Celery lets RETRY overwrite any state, and Flower kept RETRY for
    a run that succeeded (chaos hunt: 1 run in 2,103). A retry whose run still waits, the usual
    case, sends nothing more. Called in the worker's main process (`in_background`): looked up
    from a thread of its own, on a connection closed after it (the main process keeps none that
    its forked pool processes would inherit, and goes on taking tasks meanwhile).
    """
    if task_name != EXECUTE_RUN or not args:
        return
    if not in_background:
        _end_if_ended(task_id, args[0], reporter)
        return
    threading.Thread(
        target=_end_if_ended_and_close, args=(task_id, args[0], reporter),
        name="importbeat-retried", daemon=True,
    ).start()  # fmt: skip


def _end_if_ended_and_close(task_id: str, run_id: int, reporter: str) -> None:
    try:
        _end_if_ended(task_id, run_id, reporter)
    finally:
        connection.close()  # (this thread's own)


def _end_if_ended(task_id: str, run_id: int, reporter: str) -> None:
    try:
        run = ImportRun.objects.filter(pk=run_id).first()
    except DatabaseError as error:
        logger.warning("the retried task %s not checked against its run: %s", task_id, error)
        return
    if run is None:
        # Deleted as its worker parked it: the deletion found no worker noted yet (or a task
        # with no state stored yet) and told nothing, and its RETRY "waiting its turn" stayed in
        # Flower for good and a day in the result backend, no message of it ever coming again
        # (results2 hunt). A wait whose message does come tells it again then, as REVOKED.
        revoked_tasks.show_revoked([(task_id, reporter)])
        return
    if run.celery_task_id == task_id and run.status in ImportRun.FINAL_STATUSES:
        if revoked_tasks.told_revoked_at_cancel(run):
            # Cancelled while it waited for this retry: REVOKED, as the cancel told. SUCCESS
            # here overwrote that REVOKED for good (Flower keeps SUCCESS over a later REVOKED).
            revoked_tasks.show_revoked([(task_id, reporter)])
            return
        end_lost_task(task_id, run, reporter)
