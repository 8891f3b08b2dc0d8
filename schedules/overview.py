"""What an operator watches besides the run log: beat, the workers, the broker's queue, the
late imports and the drop folders' processed files. The dashboard's health panel and
`/metrics` both read them here, so they agree."""

from __future__ import annotations

import time
from typing import Any

from django.core.cache import cache

from schedules.api import health

from .attention import late_imports_count
from .broker import queue_depth

# The last answers of the broker, beat and the workers (`outside`), kept per process.
OUTSIDE_KEY = "importbeat:overview:outside"


def outside(max_age: float = 0) -> dict[str, Any]:
    """The broker, its queue, beat and the workers that answer a ping: asked now, or up to
    `max_age` seconds ago.

    A ping waits its whole timeout for answers (about a second) however many workers there
    are, and the broker check opens a connection: the dashboard page takes the answers its
    `health.json` poll got moments ago rather than making every page view wait for them.
    """
    known = cache.get(OUTSIDE_KEY)
    if known is not None and time.monotonic() - known[0] <= max_age:
        return known[1]
    broker = health.check_broker()
    answer = {
        "broker": broker,
        "beat": health.check_beat(),
        "workers": health.check_workers() if broker["ok"] else health.workers_not_asked(broker),
        "queue": queue_depth() if broker["ok"] else {},
    }
    cache.set(OUTSIDE_KEY, (time.monotonic(), answer), timeout=None)
    return answer


def cluster_health(outside_max_age: float = 0) -> dict[str, Any]:
    """Beat's leader and last tick, the workers that answer a ping, the broker, late imports,
    ticks skipped behind runs waiting for a worker, whether Redis may drop keys, the processed
    files the last retention could not clean, stuck notifications (as `/health` says them);
    all but the last five up to `outside_max_age` seconds old (`outside`)."""
    return {
        **outside(outside_max_age),
        "late_imports": late_imports_count(),
        "backlog": health.check_backlog(),
        "redis": health.check_redis(),
        "processed_files": health.check_processed_files(),
        "notifications": health.check_notifications(),
    }
