"""The previous release's statements of an import's stats (schedules.stats before the lists4
hunt): one aggregate over the window's runs for the totals, one GROUP BY day for the series.
The reference answer the tests compare today's stats with, and what the stats bench times as
"before".
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db.models import Avg, Count, Q, Sum

from schedules import stats
from schedules.models import ImportRun, ScheduledImport


def stats_as_before(
    imp: ScheduledImport, days: int = 30, now: datetime | None = None
) -> dict[str, Any]:
    """`schedules.stats.import_stats(imp, days, now)` as the previous release answered it."""
    tz = imp.tzinfo
    since, until = stats.window(days, tz, now)
    runs = imp.runs.filter(queued_at__gte=since, queued_at__lte=until)
    timed = Q(status__in=stats.TIMED_STATUSES)
    totals = runs.aggregate(
        total=Count("id"),
        **{status: Count("id", filter=Q(status=status)) for status in ImportRun.Status.values},
        avg_ms=Avg("duration_ms", filter=timed),
        p95_ms=stats.Percentile("duration_ms", 0.95, filter=timed),
        **{name: Sum(name) for name in stats.ROW_FIELDS},
    )
    by_status = {status: totals[status] for status in ImportRun.Status.values}
    finished = sum(by_status[status] for status in stats.FINISHED_STATUSES)
    return {
        "import_id": imp.pk,
        "days": days,
        "since": since,
        "until": until,
        "timezone": imp.timezone,
        "total": totals["total"],
        "by_status": by_status,
        "success_rate": _rate(by_status["succeeded"], finished),
        "success_or_partial_rate": _rate(by_status["succeeded"] + by_status["partial"], finished),
        "duration_ms": {"avg": _round(totals["avg_ms"]), "p95": _round(totals["p95_ms"])},
        "rows": {name.removeprefix("rows_"): totals[name] or 0 for name in stats.ROW_FIELDS},
        "daily": stats.runs_per_day(imp.runs.all(), days, tz, now),
    }


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _round(value: Any) -> float | None:
    return None if value is None else round(float(value), 1)
