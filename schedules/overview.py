"""What an operator watches besides the run log: beat, the workers, the broker's queue and the
late imports. The dashboard's health panel and `/metrics` both read them here, so they agree."""

from __future__ import annotations

import logging
from typing import Any

import redis
from django.conf import settings

from schedules.api import health

logger = logging.getLogger(__name__)

# kombu's Redis transport keeps a queue's messages of priority 0 under the queue's name and the
# other priority steps under the name, a separator and the step.
PRIORITY_SEPARATOR = "\x06\x16"
PRIORITY_STEPS = (3, 6, 9)


def late_imports_count() -> int:
    """Active imports with a missed tick or an overdue next one (SPEC 4: *late*)."""
    from .attention import late_condition
    from .models import ScheduledImport

    return ScheduledImport.objects.filter(late_condition()).count()


def queue_depth() -> dict[str, int | None]:
    """Messages waiting on the broker, per queue (None when the broker does not answer)."""
    from project.celery import app

    queue = app.conf.task_default_queue
    keys = [queue, *(f"{queue}{PRIORITY_SEPARATOR}{step}" for step in PRIORITY_STEPS)]
    try:
        client = redis.Redis.from_url(
            app.conf.broker_url, socket_timeout=settings.HEALTH_BROKER_TIMEOUT
        )
        with client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.llen(key)
            return {queue: sum(pipe.execute())}
    except (redis.RedisError, OSError) as error:
        logger.warning("queue depth unavailable: %s", type(error).__name__)
        return {queue: None}


def cluster_health() -> dict[str, Any]:
    """Beat's leader and last tick, the workers that answer a ping, the broker, late imports."""
    broker = health.check_broker()
    return {
        "broker": broker,
        "beat": health.check_beat(),
        "workers": health.check_workers() if broker["ok"] else {"ok": False, "count": 0},
        "late_imports": late_imports_count(),
        "queue": queue_depth() if broker["ok"] else {},
    }
