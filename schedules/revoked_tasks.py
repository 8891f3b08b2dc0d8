"""The task of a waiting run that is cancelled shows REVOKED in Flower at once.

A run waiting for its retry (its message held by a worker until its countdown ends, up to
`retry_backoff_max_seconds`) or for its turn, cancelled by the API, with its import or by its
owner's deactivation, ended `cancelled` everywhere but in Flower: its task stayed RETRY (or
RECEIVED), saying that it would be tried again, until the countdown ended and the task found
nothing to do (465 s in the outcomes hunt). Flower is now told REVOKED, from the worker of the
run's last attempt. When the message comes due, the worker tells REVOKED again and ends the
task without a result (tasks.tasks.execute_run), so Flower keeps REVOKED: it ended SUCCESS
before, which Flower let overwrite REVOKED (endings hunt).

A cancel right after a retry was announced: the worker that announced it looks at the run once
its `task-retried` event has left (tasks.lost_tasks.end_retried_task), finds it over, and tells
its final state again; it told SUCCESS of a run cancelled while it waited, which overwrote the
REVOKED of the cancel for good (leftovers hunt). A run the cancel found waiting is told REVOKED
there too (told_revoked_at_cancel).

Not revoked by Celery's control broadcast: kombu sends it retrying for ever while the broker
is away, and the request that cancelled would have waited as long. A run that never started
has no task in Flower until a worker takes its message, so it is told nothing.
"""

from __future__ import annotations

import logging
from collections import defaultdict

from kombu.exceptions import KombuError
from redis.exceptions import RedisError

from schedules.models import ImportRun

logger = logging.getLogger("importbeat.runs")


def told_revoked_at_cancel(run: ImportRun) -> bool:
    """Whether `run` was cancelled while it waited (queued, parked, or in the backoff of its
    last attempt's retry), its task told REVOKED then: no attempt was claimed after its last
    failure to be retried (a claim counts one more attempt), or none ever was. A run cancelled
    while an attempt ran ends SUCCESS, with the run's summary, as its task returned it."""
    if run.status != ImportRun.Status.CANCELLED:
        return False
    if run.attempts == 0:
        return True
    failures = run.error_details.get("attempts") if isinstance(run.error_details, dict) else None
    last = failures[-1] if failures else None
    return isinstance(last, dict) and last.get("attempt") == run.attempts and "retry_in" in last


def show_revoked(tasks: list[tuple[str, str]]) -> None:
    """Tell Flower that the tasks (task id, the worker of the run's last attempt or "") of
    waiting runs just cancelled are over. Failing (the broker away), the message, when it
    comes, finds its run cancelled and tells it then (tasks.tasks.execute_run)."""
    from celery import current_app

    by_worker: dict[str, list[str]] = defaultdict(list)
    for task_id, worker in tasks:
        if task_id and worker:
            by_worker[worker].append(task_id)
    if not by_worker:
        return
    try:
        # A connection of its own, tried once: the pool's retried for seconds, and a revoke
        # broadcast (kombu's pidbox) retries for ever, holding the request that cancelled.
        with current_app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=0)
            for worker, task_ids in by_worker.items():
                with current_app.events.Dispatcher(connection, hostname=worker) as dispatcher:
                    for task_id in task_ids:
                        dispatcher.send("task-revoked", uuid=task_id, terminated=False,
                                        signum=None, expired=False)  # fmt: skip
    except (KombuError, RedisError, OSError) as error:
        told = sum(len(ids) for ids in by_worker.values())
        logger.warning("Flower not told of %s cancelled runs' tasks: %s", told, error)
