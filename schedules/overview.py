"""What an operator watches besides the run log: beat, the workers, the broker's queue and the
late imports. The dashboard's health panel and `/metrics` both read them here, so they agree."""

from __future__ import annotations

import time
from typing import Any

from django.core.cache import cache

from schedules.api import health

from .broker import queue_depth

# The workers' last answer to a ping (schedules.api.health.check_workers), kept per process.
WORKERS_KEY = "importbeat:overview:workers"


def late_imports_count() -> int:
    """Active imports with a missed tick or an overdue next one (SPEC 4: *late*)."""
    from .attention import late_condition
    from .models import ScheduledImport

    return ScheduledImport.objects.filter(late_condition()).count()


def workers(max_age: float = 0) -> dict[str, Any]:
    """The workers that answer a ping, asked now, or up to `max_age` seconds ago.

    A ping waits its whole timeout for answers (about a second), however many workers there
    are: the dashboard page takes the answer its `health.json` poll got moments ago rather
    than making every page view wait that second.
    """
    known = cache.get(WORKERS_KEY)
    if known is not None and time.monotonic() - known[0] <= max_age:
        return known[1]
    answer = health.check_workers()
    cache.set(WORKERS_KEY, (time.monotonic(), answer), timeout=None)
    return answer


def cluster_health(workers_max_age: float = 0) -> dict[str, Any]:
    """Beat's leader and last tick, the workers that answer a ping, the broker, late imports."""
    broker = health.check_broker()
    return {
        "broker": broker,
        "beat": health.check_beat(),
        "workers": workers(workers_max_age) if broker["ok"] else {"ok": False, "count": 0},
        "late_imports": late_imports_count(),
        "queue": queue_depth() if broker["ok"] else {},
    }
