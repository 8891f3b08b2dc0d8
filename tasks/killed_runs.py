"""A run's attempt that its worker killed at the hard time limit, ended at once.

An attempt stuck where its soft time limit cannot stop it is killed by the worker's pool 30 s
later, and its process says nothing more. The run stayed `running` until the sweep found it, two
lease periods later (two minutes by default), with its import's lease held by the dead attempt
meanwhile, and Flower showed Celery's `ExceptionWithTraceback()` for its task. The worker's main
process outlives the attempt: Celery calls the task's `on_failure` there with the time limit
(`end_when_killed`), which sends a task that ends the run as the sweep would, frees the import's
lease and gives Flower the run's words. The sweep stays the net for a worker that died with its
attempt.
"""

from __future__ import annotations

import logging
from typing import Any

from celery.exceptions import TimeLimitExceeded
from kombu.exceptions import KombuError
from redis.exceptions import RedisError

from schedules import services

from . import locks, lost_tasks

logger = logging.getLogger("importbeat.runs")

END_KILLED_RUN = "importbeat.end_killed_run"


def end_when_killed(
    task: Any, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any
) -> None:
    """The run task's `on_failure`: on a hard time limit, in the worker's main process, ask for
    the killed attempt's run to be ended. Other failures are the runner's, which ended the run."""
    if not isinstance(exc, TimeLimitExceeded) or not args:
        return
    try:
        task.app.send_task(END_KILLED_RUN, args=[args[0], task_id], ignore_result=True)
    except (KombuError, RedisError, OSError) as error:
        logger.warning("run=%s killed at its hard time limit; the sweep will end it: %s",
                       args[0], error)  # fmt: skip


def end(run_id: int, task_id: str, reporter: str) -> None:
    """End run `run_id` whose attempt `task_id` was killed; `reporter` is the worker that tells
    Flower (tasks.lost_tasks)."""
    run = services.end_killed_run(run_id, task_id)
    if run is None:
        return  # the sweep or another attempt got there first
    logger.warning("run killed at its hard time limit import=%s run=%s status=%s",
                   run.scheduled_import_id, run.pk, run.status)  # fmt: skip
    try:
        locks.free_dead_runs_lease(run.scheduled_import_id, run.pk)
    except RedisError as error:
        logger.warning("the killed run %s's lease expires by itself: %s", run.pk, error)
    lost_tasks.end_lost_task(task_id, run, reporter)
