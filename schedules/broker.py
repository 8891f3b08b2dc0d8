"""What the broker holds: how many messages wait, and the ids of those waiting in Redis or held
by a worker. The one module that knows kombu's Redis layout (a list per queue and priority step,
the `unacked` hash).

Reconciliation asks before it calls a waiting run's message lost: a run may wait in a long
queue for an hour, legitimately, and a retry is held by a worker until its countdown ends. Only
the Redis transport (SPEC: the broker is Redis) can be read like this; for any other broker, or
a queue too long to read cheaply, the answer is None ("cannot tell") and nothing is declared
lost.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

from celery import current_app

from common import error_words

logger = logging.getLogger("importbeat.reconcile")

# Longer queues are a backlog, which explains any wait by itself.
MAX_READ = 20_000
# kombu's Redis transport keeps delivered, unacknowledged messages in this hash, with the time
# each was delivered in this sorted set ...
UNACKED_KEY = "unacked"
UNACKED_INDEX_KEY = "unacked_index"
# ... and a queue's messages of priority 0 under the queue's name, the other priority steps
# under the name, a separator and the step.
PRIORITY_SEPARATOR = "\x06\x16"
PRIORITY_STEPS = (3, 6, 9)


def queue_keys(queue: str) -> list[str]:
    """The Redis lists holding one queue's waiting messages."""
    return [queue, *(f"{queue}{PRIORITY_SEPARATOR}{step}" for step in PRIORITY_STEPS)]


def queue_depth() -> dict[str, int | None]:
    """Messages waiting on the broker, per queue (None when the broker does not answer)."""
    import redis
    from django.conf import settings

    from common.redis_client import from_url

    app = current_app
    queue = app.conf.task_default_queue
    try:
        client = from_url(app.conf.broker_url, socket_timeout=settings.HEALTH_BROKER_TIMEOUT)
        with client.pipeline(transaction=False) as pipe:
            for key in queue_keys(queue):
                pipe.llen(key)
            return {queue: sum(pipe.execute())}
    except (redis.RedisError, OSError) as error:
        logger.warning("queue depth unavailable: %s", _words(app.conf.broker_url, error))
        return {queue: None}


def pending_task_ids(
    held_due_before: float | None = None,
    live: set[str] | None = None,
    live_due_before: float | None = None,
    asked_of: set[str] | None = None,
) -> set[str] | None:
    """The task ids of the messages waiting in a queue or held by a worker; None when the
    broker cannot be read (or its queues are too long to read cheaply).

    A worker holds a message, unacknowledged, from its delivery until its task ends, and one
    with an ETA (a retry's countdown) until it is due as well. With `held_due_before` (a Unix
    time), a held message due (delivered, or its ETA) before then is left out: a live worker
    would have run it long ago, so its worker is presumed dead, and kombu hands such a message
    back only after the visibility timeout, hours later. With `live`, the messages the live
    workers say they hold (held_by_live_workers), a held message of `asked_of` that none of
    them holds is left out once due before `live_due_before`: its worker is gone.
    """
    import redis

    from common.redis_client import from_url

    app = current_app
    url = app.conf.broker_url or ""
    if not url.startswith(("redis://", "rediss://", "unix://")):
        return None
    client = from_url(url, socket_timeout=10)
    queues = list(app.amqp.queues) or [app.conf.task_default_queue]
    keys = [key for queue in queues for key in queue_keys(queue)]
    try:
        if sum(client.llen(key) for key in keys) + client.hlen(UNACKED_KEY) > MAX_READ:
            return None
        raw = [item for key in keys for item in client.lrange(key, 0, -1)]
        held = client.hgetall(UNACKED_KEY)
        delivered = dict(client.zrange(UNACKED_INDEX_KEY, 0, -1, withscores=True))
    except redis.RedisError as error:
        logger.warning("cannot read the broker's queues: %s", _words(url, error))
        return None
    ids = {_task_id(json.loads(item)) for item in raw}
    for tag, item in held.items():
        # An unacked entry is [message, exchange, routing key].
        message = json.loads(item)[0]
        due = _due(message, delivered.get(tag))
        if (
            live is not None
            and live_due_before is not None
            and _task_id(message) in (asked_of or ())
        ):
            # (one delivered or due just now may not be in its worker's answer yet)
            kept = _task_id(message) in live or due >= live_due_before
        else:
            kept = held_due_before is None or due >= held_due_before
        if kept:
            ids.add(_task_id(message))
    ids.discard("")
    return ids


def held_by_live_workers(timeout: float) -> set[str] | None:
    """The task ids every live worker holds (project.worker_held), None when the workers
    cannot be asked. A worker that does not answer in `timeout` holds nothing here: what it
    holds may be sent again, and the run's claim and lease let one delivery through."""
    app = current_app
    try:
        with app.connection_for_write() as connection:
            # kombu's own patience with a broker briefly away (tries for
            # broker_connection_timeout, 2 s apart), as the broadcast would connect, but none
            # with one that refuses the login: it refused again at every try, ~6 s a pass.
            connection.ensure_connection(
                errback=_no_retry_of_a_refused_login, timeout=connection.connect_timeout
            )
            replies = app.control.broadcast(
                "importbeat_held", reply=True, timeout=timeout, connection=connection
            )
    except Exception as error:  # the broker: the 30-minute rule stands in
        logger.warning(
            "cannot ask the workers what they hold: %s", _words(app.conf.broker_url, error)
        )
        return None
    return {
        task_id
        for reply in replies or []
        for answer in reply.values()
        if isinstance(answer, dict)
        for task_id in answer.get("ids", [])
    }


def _no_retry_of_a_refused_login(error: BaseException, _interval: float) -> None:
    """Give up the connection's tries at a login the broker refused: its user name and
    password will not change between them."""
    if error_words.login_refusal("the broker", error):
        raise error


def _words(url: str | None, error: BaseException) -> str:
    """A broker that failed a read, in words (a login it refuses, why it cannot be reached):
    the log quoted redis-py's class ("AuthenticationError") or text ("invalid
    username-password pair or user is disabled.", "Error 111 connecting to …"); its text now
    only where no words know the reason."""
    return error_words.redis_for_the_log(error, url or "", "the broker")


def _due(message: dict, delivered: float | None) -> float:
    """When a held message was due to run: its ETA, or its delivery when it is later (a
    message missing from the index was delivered just now)."""
    due = delivered if delivered is not None else float("inf")
    eta = (message.get("headers") or {}).get("eta")
    if eta:
        try:
            when = datetime.fromisoformat(eta)
        except ValueError:
            return due
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        due = max(due, when.timestamp())
    return due


def _task_id(message: dict) -> str:
    return (message.get("headers") or {}).get("id", "")
