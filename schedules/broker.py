"""What the broker holds: how many messages wait, and the ids of those waiting in Redis or held
by a worker. The one module that knows kombu's Redis layout (a list per queue and priority step,
the `unacked` hash).

Reconciliation asks before it calls a queued run's message lost: a run may wait in a long
queue for an hour, legitimately. Only the Redis transport (SPEC: the broker is Redis) can be
read like this; for any other broker, or a queue too long to read cheaply, the answer is None
("cannot tell") and nothing is declared lost.
"""

from __future__ import annotations

import json
import logging

logger = logging.getLogger("importbeat.reconcile")

# Longer queues are a backlog, which explains any wait by itself.
MAX_READ = 20_000
# kombu's Redis transport keeps delivered, unacknowledged messages in this hash ...
UNACKED_KEY = "unacked"
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

    from project.celery import app

    queue = app.conf.task_default_queue
    try:
        client = redis.Redis.from_url(
            app.conf.broker_url, socket_timeout=settings.HEALTH_BROKER_TIMEOUT
        )
        with client.pipeline(transaction=False) as pipe:
            for key in queue_keys(queue):
                pipe.llen(key)
            return {queue: sum(pipe.execute())}
    except (redis.RedisError, OSError) as error:
        logger.warning("queue depth unavailable: %s", type(error).__name__)
        return {queue: None}


def pending_task_ids() -> set[str] | None:
    import redis

    from project.celery import app

    url = app.conf.broker_url or ""
    if not url.startswith(("redis://", "rediss://", "unix://")):
        return None
    client = redis.Redis.from_url(url, socket_timeout=10)
    queues = list(app.amqp.queues) or [app.conf.task_default_queue]
    keys = [key for queue in queues for key in queue_keys(queue)]
    try:
        if sum(client.llen(key) for key in keys) > MAX_READ:
            return None
        raw = [item for key in keys for item in client.lrange(key, 0, -1)]
        held = client.hvals(UNACKED_KEY)
    except redis.RedisError as error:
        logger.warning("cannot read the broker's queues: %s", error)
        return None
    ids = {_task_id(json.loads(item)) for item in raw}
    # An unacked entry is [message, exchange, routing key].
    ids |= {_task_id(json.loads(item)[0]) for item in held}
    ids.discard("")
    return ids


def _task_id(message: dict) -> str:
    return (message.get("headers") or {}).get("id", "")
