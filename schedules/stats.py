"""Run statistics for the API (`/imports/{id}/stats/`) and the staff dashboard.

PostgreSQL does the counting: one aggregate for the totals (with `percentile_cont` for the
p95 duration) and one GROUP BY day for the series, whatever the number of runs.
"""

from __future__ import annotations

import zoneinfo
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Aggregate, Avg, Count, FloatField, Q, QuerySet, Sum
from django.db.models.functions import TruncDate

from common import database_clock

from .models import ImportRun, ScheduledImport

# Runs that did work: their duration means something (a skipped run took no time).
TIMED_STATUSES = ("succeeded", "partial", "failed", "timed_out")
# The runs that did work, by outcome: partial (some rows rejected) is counted apart, never as
# a success.
FINISHED_STATUSES = ("succeeded", "partial", "failed", "timed_out")
ROW_FIELDS = (
    "rows_read", "rows_inserted", "rows_updated", "rows_unchanged", "rows_deleted", "rows_failed",
)  # fmt: skip


class Percentile(Aggregate):
    """PostgreSQL's `percentile_cont(p) WITHIN GROUP (ORDER BY expr)`."""

    function = "PERCENTILE_CONT"
    template = "%(function)s(%(percentile)s) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = FloatField()

    def __init__(self, expression: str, percentile: float, **extra: Any) -> None:
        super().__init__(expression, percentile=float(percentile), **extra)


def window(
    days: int, tz: zoneinfo.ZoneInfo, now: datetime | None = None
) -> tuple[datetime, datetime]:
    """The last `days` whole local days, today included: [midnight `days-1` days ago, now].
    Now is the database's (common.database_clock), as the runs' times are."""
    now = now or database_clock.now()
    first_day = now.astimezone(tz).date() - timedelta(days=days - 1)
    return datetime.combine(first_day, datetime.min.time(), tzinfo=tz), now


def runs_per_day(
    runs: QuerySet[ImportRun], days: int, tz: zoneinfo.ZoneInfo, now: datetime | None = None
) -> list[dict[str, Any]]:
    """One entry per local day of the window (days without runs included), counts per status."""
    since, until = window(days, tz, now)
    # One group per (day, status): a year of history puts tens of thousands of runs in the
    # dashboard's two weeks, and one hash lookup per run costs less than a filtered count per
    # status per run. The statuses are read from the queued_at index alone (it includes them).
    rows = (
        runs.filter(queued_at__gte=since, queued_at__lte=until)
        .annotate(day=TruncDate("queued_at", tzinfo=tz))
        .values_list("day", "status")
        .annotate(count=Count("*"))
        .order_by()
    )
    first = since.date()
    series = [
        {
            "date": (first + timedelta(days=offset)).isoformat(),
            "total": 0,
            **dict.fromkeys(ImportRun.Status.values, 0),
        }
        for offset in range(days)
    ]
    for day, status, count in rows:
        entry = series[(day - first).days]
        entry[status] = entry.get(status, 0) + count
        entry["total"] += count
    return series


def import_stats(
    imp: ScheduledImport, days: int = 30, now: datetime | None = None
) -> dict[str, Any]:
    """Totals per status, success rate, average and p95 duration, row totals, per-day series,
    over the last `days` days in the import's timezone."""
    tz = imp.tzinfo
    since, until = window(days, tz, now)
    runs = imp.runs.filter(queued_at__gte=since, queued_at__lte=until)
    totals = runs.aggregate(
        total=Count("id"),
        **{status: Count("id", filter=Q(status=status)) for status in ImportRun.Status.values},
        avg_ms=Avg("duration_ms", filter=Q(status__in=TIMED_STATUSES)),
        p95_ms=Percentile("duration_ms", 0.95, filter=Q(status__in=TIMED_STATUSES)),
        **{name: Sum(name) for name in ROW_FIELDS},
    )
    by_status = {status: totals[status] for status in ImportRun.Status.values}
    finished = sum(by_status[s] for s in FINISHED_STATUSES)
    return {
        "import_id": imp.pk,
        "days": days,
        "since": since,
        "until": until,
        "timezone": imp.timezone,
        "total": totals["total"],
        "by_status": by_status,
        # Of the finished runs, the share that succeeded; partial runs are not successes.
        "success_rate": _rate(by_status["succeeded"], finished),
        # The share that landed rows, partial runs included, named as such.
        "success_or_partial_rate": _rate(by_status["succeeded"] + by_status["partial"], finished),
        "duration_ms": {
            "avg": _round(totals["avg_ms"]),
            "p95": _round(totals["p95_ms"]),
        },
        "rows": {name.removeprefix("rows_"): totals[name] or 0 for name in ROW_FIELDS},
        "daily": runs_per_day(imp.runs.all(), days, tz, now),
    }


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 1)
