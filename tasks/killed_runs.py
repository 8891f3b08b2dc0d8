"""A task killed at its hard time limit fails in words; a run's attempt so killed ends at once.

An attempt stuck where its soft time limit cannot stop it is killed by the worker's pool 30 s
later, and its process says nothing more. The run stayed `running` until the sweep found it, two
lease periods later (two minutes by default), with its import's lease held by the dead attempt
meanwhile, and Flower showed Celery's `ExceptionWithTraceback()` for its task (billiard's wrapper
of the time limit, whose text is empty). The worker's main process outlives the attempt: it ends
the run as the sweep would and frees the import's lease, there and then, and its task ends in
Flower as the run did (project.task_class asks `ending_when_killed`): failed in the run's words,
or succeeded with the run's summary when the run ended well (its rows had committed, or its
owner had asked it to stop). Such a run's task failed in Flower, "run 11 succeeded: ", while the
run log, the API and the admin said succeeded.

A task sent to end it waited behind every run queued, as long as they took (the sweep's own
message waits there too), so the main process does it on a database connection it closes at once
(its forked pool processes must not inherit one), waiting for no lock. Only when that fails
(the database away, the run's row still locked by the dead attempt's statement) does a task end
it. The sweep stays the net for a worker that died with its attempt.

Ended by that task (or by the sweep, when the broker did not take it), the run's task is told
once, by whichever ends the run (tasks.lost_tasks.end_lost_task), and the killing worker tells
Flower nothing (`told_when_ended`): it told FAILURE, "killed at its hard time limit", and the
task told the run's end again, two failed tasks counted for one run timed out, or a failure
and a success for one run that succeeded (endings hunt). Until then the task stays STARTED in
Flower, as its run stays `running` in the log.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from celery import current_app
from celery.exceptions import TimeLimitExceeded
from django.db import DatabaseError, connection
from kombu.exceptions import KombuError
from redis.exceptions import RedisError

from common import error_words
from schedules import services
from schedules.models import ImportRun, ScheduledImport

from . import fairness, locks, lost_tasks, runner
from .errors import RunFailed

logger = logging.getLogger("importbeat.runs")

END_KILLED_RUN = "importbeat.end_killed_run"


@dataclass(frozen=True)
class KilledTask:
    """How a task killed at its hard time limit ends in Flower: failed with `words`, or, when
    its run ended well, succeeded with `result` (the run's summary, as its attempt would have
    returned it)."""

    words: str
    result: dict[str, Any] | None = None
    # Its end told by whatever ends its run later (the task sent to, or the sweep): the
    # killing worker tells Flower nothing of it (project.task_class).
    told_when_ended: bool = False


def ending_when_killed(
    task_name: str,
    task_id: str,
    args: Any,
    timeout: float | None,
    soft_limit: float | None,
    pid: int | None = None,
) -> KilledTask:
    """How the task `task_id`, killed at its hard time limit (`timeout`; its soft one
    `soft_limit`) in pool process `pid`, ends. A run's attempt is ended first, in the main
    process of the worker that killed it, once its process is dead."""
    limit = f" of {timeout:g}s" if isinstance(timeout, int | float) else ""
    killed = repr(TimeLimitExceeded(f"the task was killed at its hard time limit{limit}"))
    if task_name == services.EXECUTE_RUN and args:
        _kill(pid)
        run = _end_at_once(args[0], task_id, soft_limit)
        if run is _ENDED_LATER:
            return KilledTask(killed, told_when_ended=True)
        if isinstance(run, ImportRun):
            words = repr(RunFailed(f"run {run.pk} {run.status}: {run.error_message}"))
            if run.status in services.FAILED_STATUSES:
                return KilledTask(words)
            return KilledTask(words, result=runner.summary(run))
    return KilledTask(killed)


def _kill(pid: int | None) -> None:
    """Kill the attempt's pool process now. The pool tells of the kill before it kills (the
    job's result, then SIGTERM and SIGKILL): the run was ended and its import's lease freed
    while the stuck attempt still lived, for as long as the main process's statements took, and
    another run of the import could start beside it. Not reaped here: the pool does that, and
    a process not reaped keeps its pid, so this never reaches another one."""
    if pid and pid != os.getpid():  # (a pool that runs tasks in this process kills none)
        with suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
            _wait_until_dead(pid)


def _wait_until_dead(pid: int, seconds: float = 1.0) -> None:
    """Wait (up to `seconds`) until `pid` is dead: a signal is delivered when the process is
    next scheduled, and a loaded machine ended the run while its attempt still ran. Read from
    /proc (a zombie, not reaped, is dead); without /proc, not waited for."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat", "rb") as stat:
                state = stat.read().rsplit(b")", 1)[1].split()[0]
        except FileNotFoundError:
            return  # reaped
        except (OSError, IndexError):
            return  # no /proc to read: not waited for
        if state in (b"Z", b"X"):
            return
        time.sleep(0.002)


# (_end_at_once: the run is left to the task sent to end it, or to the sweep)
_ENDED_LATER = object()


def _end_at_once(run_id: int, task_id: str, soft_limit: float | None) -> ImportRun | object | None:
    """The run ended, or as it had ended; None when its attempt was no longer running;
    _ENDED_LATER when it could not be ended here."""
    try:
        try:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT set_config('lock_timeout', '1s', false), "
                    "set_config('statement_timeout', '10s', false)"
                )
            run = services.end_killed_run(run_id, task_id, soft_limit)
            if run is None:
                # Ended by its attempt before the kill, which came as it handed on or queued
                # the next delivery: told as it ended (it failed in Flower, "killed at its hard
                # time limit", a run the log says succeeded: review2).
                return ImportRun.objects.filter(
                    pk=run_id, celery_task_id=task_id, status__in=ImportRun.FINAL_STATUSES
                ).first()
        except Exception as error:
            logger.warning("run=%s killed at its hard time limit, not ended at once: %s",
                           run_id, error_words.log_text(error))  # fmt: skip
            _send_end(run_id, task_id, soft_limit)
            return _ENDED_LATER
        if run is not None:
            _ended(run, in_background=True)
        return run
    finally:
        connection.close()


def _send_end(run_id: int, task_id: str, soft_limit: float | None) -> None:
    try:
        current_app.send_task(
            END_KILLED_RUN, args=[run_id, task_id, soft_limit], ignore_result=True
        )
    except (KombuError, RedisError, OSError) as error:
        logger.warning("run=%s killed at its hard time limit; the sweep will end it: %s",
                       run_id, error)  # fmt: skip


def end(run_id: int, task_id: str, reporter: str, soft_limit: float | None = None) -> None:
    """The task's way, when the main process could not: end run `run_id` whose attempt
    `task_id` was killed under `soft_limit` (its message's; None from a message of a release
    that did not send it: the import's own); `reporter` is the worker that tells Flower
    (tasks.lost_tasks). Without the limit, a run killed under 600 s said it exceeded 1200 s,
    its import's timeout raised since."""
    run = services.end_killed_run(run_id, task_id, soft_limit)
    if run is None:
        return  # the sweep or another attempt got there first
    _ended(run)
    lost_tasks.end_lost_task(task_id, run, reporter)


def _ended(run: ImportRun, in_background: bool = False) -> None:
    """Free the killed run's lease and hand its owner's slot on: the attempt's own `finally`
    died with it, and a run parked in its owner's line waited for the sweep (a minute). In the
    worker's main process (`in_background`), handed on from a thread of its own: the owner's
    admission lock may be waited for (up to 10 s when its holder died), and the main process
    must not stop taking and watching tasks meanwhile."""
    logger.warning("run killed at its hard time limit import=%s run=%s status=%s",
                   run.scheduled_import_id, run.pk, run.status)  # fmt: skip
    try:
        locks.free_dead_runs_lease(run.scheduled_import_id, run.pk)
    except RedisError as error:
        logger.warning("the killed run %s's lease expires by itself: %s", run.pk, error)
    if in_background:
        threading.Thread(
            target=_hand_on_and_close, args=(run,), name="importbeat-hand-on", daemon=True
        ).start()
    else:
        _hand_on(run)


def _hand_on_and_close(run: ImportRun) -> None:
    try:
        _hand_on(run)
    finally:
        connection.close()  # (this thread's own)


def _hand_on(run: ImportRun) -> None:
    try:
        owner_id = ScheduledImport.objects.values_list("owner_id", flat=True).get(
            pk=run.scheduled_import_id
        )
    except (ScheduledImport.DoesNotExist, DatabaseError) as error:
        logger.warning("the killed run %s's owner's line is the sweep's: %s", run.pk, error)
        return
    fairness.hand_on(owner_id, ended=run.pk)
