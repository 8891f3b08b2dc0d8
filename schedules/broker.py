"""What the broker holds: the ids of the task messages waiting in Redis or held by a worker.

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
# kombu's Redis transport keeps delivered, unacknowledged messages in this hash.
UNACKED_KEY = "unacked"


def pending_task_ids() -> set[str] | None:
    import redis

    from project.celery import app

    url = app.conf.broker_url or ""
    if not url.startswith(("redis://", "rediss://", "unix://")):
        return None
    client = redis.Redis.from_url(url, socket_timeout=10)
    queues = list(app.amqp.queues) or [app.conf.task_default_queue]
    try:
        if any(client.llen(queue) > MAX_READ for queue in queues):
            return None
        raw = [item for queue in queues for item in client.lrange(queue, 0, -1)]
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
