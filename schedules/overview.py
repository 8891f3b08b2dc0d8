"""What an operator watches besides the run log: beat, the workers, the broker's queue and the
late imports. The dashboard's health panel and `/metrics` both read them here, so they agree."""

from __future__ import annotations

from typing import Any

from schedules.api import health

from .broker import queue_depth


def late_imports_count() -> int:
    """Active imports with a missed tick or an overdue next one (SPEC 4: *late*)."""
    from .attention import late_condition
    from .models import ScheduledImport

    return ScheduledImport.objects.filter(late_condition()).count()


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
