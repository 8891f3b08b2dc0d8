"""The task of an attempt whose worker died, ended in Flower by the sweep that resolved its run.

Flower shows a task's state from the events its worker sends. A worker killed mid-run (SIGKILL,
a host gone) sends none, so the lost attempt's task stayed STARTED for ever beside the run's
next task: an import that looked still running, and nothing tying the task to the run, whose
`celery_task_id` names the task sent again. The sweep, which tells the lost run from a slow one,
sends the event the dead worker could not: FAILURE with the run's words when the attempt failed
(the run sent again, failed or timed out), SUCCESS with its status when its rows had committed
(or it was cancelled), as the runner's own task would have ended (tasks.runner).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from django.db import DatabaseError, connection
from kombu.exceptions import KombuError
from redis.exceptions import RedisError

from schedules import revoked_tasks
from schedules.models import ImportRun
from schedules.services import EXECUTE_RUN

logger = logging.getLogger("importbeat.maintenance")


def end_lost_task(task_id: str, run: ImportRun, reporter: str) -> None:
    """Send the final event of `task_id`, the lost attempt of `run` (as resolved by the sweep),
    from the worker `reporter` (Flower counts the task there: the dead one would look alive)."""
    from celery import current_app

    if not task_id:
        return
    ended_well = run.status in ImportRun.FINAL_STATUSES and run.status not in run.FAILED_STATUSES
    try:
        with current_app.events.default_dispatcher(hostname=reporter) as dispatcher:
            if ended_well:
                result = {"run_id": run.pk, "status": run.status, "rows_read": run.rows_read}
                dispatcher.send("task-succeeded", uuid=task_id, result=repr(result), runtime=0.0)
            else:
                dispatcher.send("task-failed", uuid=task_id, exception=_words(run), traceback="")
    except (KombuError, RedisError, OSError) as error:
        logger.warning("the lost task %s of run %s could not be ended in Flower: %s",
                       task_id, run.pk, error)  # fmt: skip


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
        run = ImportRun.objects.filter(pk=run_id, celery_task_id=task_id).first()
    except DatabaseError as error:
        logger.warning("the retried task %s not checked against its run: %s", task_id, error)
        return
    if run is not None and run.status in ImportRun.FINAL_STATUSES:
        if revoked_tasks.told_revoked_at_cancel(run):
            # Cancelled while it waited for this retry: REVOKED, as the cancel told. SUCCESS
            # here overwrote that REVOKED for good (Flower keeps SUCCESS over a later REVOKED).
            revoked_tasks.show_revoked([(task_id, reporter)])
            return
        end_lost_task(task_id, run, reporter)
