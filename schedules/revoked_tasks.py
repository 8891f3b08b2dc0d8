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

The result backend is told too (Flower's result page, AsyncResult): a run cancelled or deleted
while parked in its owner's line kept the RETRY "waiting its turn" its task stored for
CELERY_RESULT_EXPIRES (a day), though its run log said cancelled. Its message never comes again
(the hand-on drops a run no longer waiting from the line), so nothing else stored its end. A run
in its backoff or waiting for its import's lease said RETRY until its message came, and now
says REVOKED at once as Flower does. One write per such run's task, at the cancel; the worker
that announces a retry of a run cancelled meanwhile stores it again (the worker's RETRY may land
after the cancel's REVOKED: tasks.lost_tasks.end_retried_task).

Not revoked by Celery's control broadcast: kombu sends it retrying for ever while the broker
is away, and the request that cancelled would have waited as long. A run that never started
has no task in Flower until a worker takes its message, so it is told nothing.
"""

from __future__ import annotations

import logging
from collections import defaultdict

from celery.exceptions import BackendError
from kombu.exceptions import KombuError
from redis.exceptions import RedisError

from common import error_words
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


# Why a waiting run's task was revoked, as its stored state says it.
REVOKED_WHILE_IT_WAITED = "its run was cancelled, skipped or deleted while it waited"


def show_revoked(tasks: list[tuple[str, str]]) -> None:
    """Tell Flower, and the result backend, that the tasks (task id, the worker of the run's
    last attempt or "") of waiting runs just cancelled are over. Failing (the broker away),
    the message, when it comes, finds its run cancelled and tells it then
    (tasks.tasks.execute_run); a parked run's has none to come (stored_revoked)."""
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
    # (a task no worker took has no state stored, and gets none)
    stored_revoked([task_id for task_ids in by_worker.values() for task_id in task_ids])


def stored_revoked(task_ids: list[str]) -> None:
    """Store REVOKED as the state of `task_ids`, the tasks of waiting runs just ended, over the
    RETRY each stored while it waited. A parked run's said "waiting its turn" for a day: its
    message never comes (its line drops it), and Flower's REVOKED came by an event only."""
    from celery import current_app

    backend = current_app.backend
    for stored, task_id in enumerate(task_ids):
        try:
            backend.mark_as_revoked(task_id, REVOKED_WHILE_IT_WAITED)
        except (RedisError, BackendError, OSError) as error:
            # The rest would wait as long each: the state stays until CELERY_RESULT_EXPIRES.
            why = error_words.refusal(error) or error_words.reason(error)
            logger.warning("the tasks of %s waiting runs just ended still say they wait in the "
                           "result backend (not stored as revoked: %s)",
                           len(task_ids) - stored, why)  # fmt: skip
            logger.debug("result backend: %s: %s", type(error).__name__,
                         error_words.log_text(error))  # fmt: skip
            return
