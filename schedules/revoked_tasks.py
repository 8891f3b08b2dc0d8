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
says REVOKED at once as Flower does. Only over a state stored, in two round trips per 500 tasks
at the cancel, waiting 2 s at most (stored_revoked); the worker that announces a retry of a run
cancelled meanwhile stores it (the worker's RETRY may land after the cancel:
tasks.lost_tasks.end_retried_task).

Not revoked by Celery's control broadcast: kombu sends it retrying for ever while the broker
is away, and the request that cancelled would have waited as long. A run that never started
has no task in Flower until a worker takes its message, so it is told nothing.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from typing import Any

from celery.exceptions import BackendError
from kombu.exceptions import KombuError
from redis.exceptions import RedisError

from common import error_words, result_backend
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


# How long a cancel, a pause or a deletion waits on the result backend in all, as `/health` waits
# on a Redis (schedules.api.health): its own client waited CELERY_REDIS_SOCKET_TIMEOUT (10 s),
# redis-py's retries on top, on a Redis that accepts connections and never answers; the run log
# is the truth, and a state not stored expires as before (CELERY_RESULT_EXPIRES).
STORE_WAIT_SECONDS = result_backend.STORE_WAIT_SECONDS
STORE_BOUND_SECONDS = result_backend.STORE_BOUND_SECONDS
# Task states read (MGET) and written (one pipeline) per round trip.
STORE_CHUNK = 500


def stored_revoked(task_ids: list[str]) -> None:
    """Store REVOKED as the state of `task_ids`, the tasks of waiting runs just ended, over the
    RETRY each stored while it waited. A parked run's said "waiting its turn" for a day: its
    message never comes (its line drops it), and Flower's REVOKED came by an event only.

    Only over a state stored: a task without one (no worker took it, or its worker has not
    stored its wait yet: it stores it again when it announces the retry,
    tasks.lost_tasks.end_retried_task) has nothing to end; not over a SUCCESS (Celery's own
    guard) nor a REVOKED. Two round trips for each STORE_CHUNK tasks, each bounded: Celery's
    mark_as_revoked cost two per task, one task after another (2,000 runs of an import
    cancelled: 4,000 round trips), waiting 10 s on a silent Redis."""
    from celery import current_app
    from celery.backends.redis import RedisBackend

    backend = current_app.backend
    if not task_ids:
        return
    if not isinstance(backend, RedisBackend):
        _stored_one_by_one(backend, task_ids)
        return
    deadline = time.monotonic() + STORE_BOUND_SECONDS
    done = 0
    try:
        client = result_backend.bounded_client(backend)
        for start in range(0, len(task_ids), STORE_CHUNK):
            chunk = task_ids[start : start + STORE_CHUNK]
            keys = [backend.get_key_for_task(task_id) for task_id in chunk]
            _within(deadline)
            writes = client.pipeline(transaction=False)
            for task_id, key, value in zip(chunk, keys, client.mget(keys), strict=True):
                if value is not None and _state(backend, value) not in _KEPT:
                    _revoked_into(writes, backend, task_id, key)
            if writes:
                _within(deadline)
                writes.execute()
            done = start + len(chunk)
    except (RedisError, BackendError, OSError) as error:
        _not_stored(len(task_ids) - done, error)


def _within(deadline: float) -> None:
    if time.monotonic() > deadline:
        raise TimeoutError(f"timed out: not done within {STORE_BOUND_SECONDS:g} s")


# States a cancel does not store over: Celery keeps a SUCCESS (a lost or duplicated delivery's
# later state never replaces it), and a REVOKED is already the end.
_KEPT = frozenset({"SUCCESS", "REVOKED"})


def _state(backend: Any, value: bytes) -> str | None:
    """The state a stored value says; None for one this backend cannot read (it is written over,
    as the run log says the run is over)."""
    try:
        return backend.decode_result(value).get("status")
    except (KombuError, ValueError, TypeError, AttributeError):
        return None


def _revoked_into(writes: Any, backend: Any, task_id: str, key: str) -> None:
    """REVOKED for `task_id`, written as Celery's Redis backend writes a state (its meta encoded,
    kept `backend.expires` seconds, published on the key for AsyncResult.get), into `writes`."""
    from celery import states
    from celery.exceptions import TaskRevokedError

    result = backend.encode_result(TaskRevokedError(REVOKED_WHILE_IT_WAITED), states.REVOKED)
    meta = backend._get_result_meta(result=result, state=states.REVOKED, traceback=None,
                                    request=None)  # fmt: skip
    meta["task_id"] = task_id
    value = backend.encode(meta)
    if backend.expires:
        # SETEX as Celery sends it, without redis-py's deprecation warning of setex().
        writes.execute_command("SETEX", key, int(backend.expires), value)
    else:
        writes.execute_command("SET", key, value)
    writes.publish(key, value)


def _stored_one_by_one(backend: Any, task_ids: list[str]) -> None:
    """Through Celery, one task after another (a result backend other than Redis)."""
    for stored, task_id in enumerate(task_ids):
        try:
            backend.mark_as_revoked(task_id, REVOKED_WHILE_IT_WAITED)
        except (RedisError, BackendError, OSError) as error:
            # The rest would wait as long each: the state stays until CELERY_RESULT_EXPIRES.
            _not_stored(len(task_ids) - stored, error)
            return


def _not_stored(count: int, error: BaseException) -> None:
    why = error_words.refusal(error) or error_words.reason(error)
    logger.warning("the tasks of %s waiting runs just ended still say they wait in the "
                   "result backend (not stored as revoked: %s)", count, why)  # fmt: skip
    logger.debug("result backend: %s: %s", type(error).__name__, error_words.log_text(error))
