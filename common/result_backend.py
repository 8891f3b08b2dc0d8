"""The result backend as the cluster's own writes reach it: bounded waits, no retries.

A cancel's REVOKED (schedules.revoked_tasks) and a lost task's end (tasks.lost_tasks) are written
beside the run log, which is the truth: Celery's own client waited CELERY_REDIS_SOCKET_TIMEOUT
(10 s), with redis-py's and Celery's retries on top, on a Redis that accepts connections and
never answers. Both write through one client per backend and process: each kept a pool of its
own, two pools of connections to the same Redis in every worker process (results3 hunt).

In `common` so that `schedules` and `tasks` share it without one importing the other (STYLE
rule 15).
"""

from __future__ import annotations

import weakref
from typing import Any

# How long one write waits to connect and for each answer, and the writes of one cancel (or one
# sweep pass) in all, as `/health` waits on a Redis (schedules.api.health); a state not stored
# expires as before (CELERY_RESULT_EXPIRES).
STORE_WAIT_SECONDS = 1.0
STORE_BOUND_SECONDS = 2.0

_clients: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def bounded_client(backend: Any) -> Any:
    """A client of `backend`'s Redis (a Celery RedisBackend: its own connection settings,
    server, TLS, login) that waits STORE_WAIT_SECONDS to connect and as much for each answer,
    and does not retry; one per backend, its connections kept."""
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    client = _clients.get(backend)
    if client is None:
        params = {**backend.connparams, "socket_timeout": STORE_WAIT_SECONDS,
                  "retry": Retry(NoBackoff(), 0)}  # fmt: skip
        if "socket_connect_timeout" in params:  # not for a unix socket's connection
            params["socket_connect_timeout"] = STORE_WAIT_SECONDS
        client = _clients[backend] = backend._create_client(**params)
    return client


def bounded(backend: Any) -> Any:
    """`backend` as it stores a task's state (Celery's own code: its encoding, its guard of a
    SUCCESS, its expiries) through bounded_client, its writes not retried; a result backend
    other than Redis as it is."""
    from celery.backends.redis import RedisBackend

    if not isinstance(backend, RedisBackend):
        return backend
    # Its attributes as they are, shared (copy.copy would build a new one from its URL, as
    # Celery's backends pickle), but for two cached properties: its client, and the retries of
    # its writes.
    copy = object.__new__(type(backend))
    copy.__dict__.update(backend.__dict__)
    copy.__dict__["client"] = bounded_client(backend)
    copy.__dict__["retry_policy"] = {**backend.retry_policy, "max_retries": 0}
    copy.always_retry = False
    return copy
