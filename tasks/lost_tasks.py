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

from kombu.exceptions import KombuError
from redis.exceptions import RedisError

from schedules.models import ImportRun

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
