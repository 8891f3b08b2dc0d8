"""Run statistics for the API (`/imports/{id}/stats/`) and the staff dashboard.

PostgreSQL does the counting, whatever the number of runs. For an import, one GROUP BY
(day, status) over run_history_idx alone gives the series and, added up here, the totals;
the exact p95 duration is read from the top of run_duration_rank_idx (lists4 hunt: a year of
500,000 runs of one import took 1.1-2.3 s in two passes over the runs' rows, one for the
totals and one for the series; tests/bench/bench_stats_and_empty_filters.py). Every such
pass still reads each run of the window: under 100 ms at that size needs rollups by day.
"""

from __future__ import annotations

import math
import zoneinfo
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import connection, transaction
from django.db.models import Aggregate, Count, FloatField, QuerySet
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
    series = _empty_series(first, days)
    for day, status, count in rows:
        entry = series[(day - first).days]
        entry[status] = entry.get(status, 0) + count
        entry["total"] += count
    return series


def import_stats(
    imp: ScheduledImport, days: int = 30, now: datetime | None = None
) -> dict[str, Any]:
    """Totals per status, success rate, average and p95 duration, row totals, per-day series,
    over the last `days` days in the import's timezone.

    The totals are the sums of the series' groups, exactly as one aggregate over the runs
    counted them (the average is the timed runs' summed durations over their number, as AVG
    takes it); the p95 is `percentile_cont(0.95)`'s, exact (_p95)."""
    tz = imp.tzinfo
    since, until = window(days, tz, now)
    by_status = dict.fromkeys(ImportRun.Status.values, 0)
    row_totals = dict.fromkeys(ROW_FIELDS, 0)
    total = timed_ms = 0
    first = since.date()
    series = _empty_series(first, days)
    with _one_snapshot():
        groups = _groups(imp.pk, first, days, tz, until)
        timed_count = sum(
            durations for _, status, _, durations, *_ in groups if status in TIMED_STATUSES
        )
        p95_ms = _p95(imp, since, until, timed_count)
    for day, status, count, _, day_ms, *day_rows in groups:
        total += count
        if status in by_status:
            by_status[status] += count
        if status in TIMED_STATUSES:
            timed_ms += day_ms or 0
        for name, value in zip(ROW_FIELDS, day_rows, strict=True):
            row_totals[name] += value or 0
        entry = series[day]
        entry[status] = entry.get(status, 0) + count
        entry["total"] += count
    finished = sum(by_status[s] for s in FINISHED_STATUSES)
    return {
        "import_id": imp.pk,
        "days": days,
        "since": since,
        "until": until,
        "timezone": imp.timezone,
        "total": total,
        "by_status": by_status,
        # Of the finished runs, the share that succeeded; partial runs are not successes.
        "success_rate": _rate(by_status["succeeded"], finished),
        # The share that landed rows, partial runs included, named as such.
        "success_or_partial_rate": _rate(by_status["succeeded"] + by_status["partial"], finished),
        "duration_ms": {
            # AVG's exact quotient (numeric), rounded as before.
            "avg": _round(Decimal(timed_ms) / timed_count if timed_count else None),
            "p95": _round(p95_ms),
        },
        "rows": {name.removeprefix("rows_"): value for name, value in row_totals.items()},
        "daily": series,
    }


# An import's runs of the window by local day (d.n - 1, from `first`) and status (the timed
# ones' durations are added up by status in Python, not filtered per run), read from
# run_history_idx alone: one range of the index per day, between local midnights Python
# computed (DST included), so PostgreSQL neither converts each run's time to the zone nor
# guesses a group per run. Grouped by the runs' day in the zone (`AT TIME ZONE`), a year of
# 500,000 runs was sorted on disk (it expected 500,000 groups): 1.0-1.75 s, now 0.55-0.8.
_GROUPS_SQL = f"""
    SELECT d.n - 1, r.status, count(*), count(r.duration_ms), sum(r.duration_ms),
           {", ".join(f"sum(r.{name})" for name in ROW_FIELDS)}
    FROM unnest(%(starts)s::timestamptz[], %(ends)s::timestamptz[])
         WITH ORDINALITY AS d(starts_at, ends_at, n)
    JOIN {ImportRun._meta.db_table} AS r
      ON r.scheduled_import_id = %(import_id)s
     AND r.queued_at >= d.starts_at AND r.queued_at < d.ends_at AND r.queued_at <= %(until)s
    GROUP BY d.n, r.status
"""


def _groups(
    import_id: int, first: date, days: int, tz: zoneinfo.ZoneInfo, until: datetime
) -> list[tuple[Any, ...]]:
    midnights = [
        datetime.combine(first + timedelta(days=offset), datetime.min.time(), tzinfo=tz)
        for offset in range(days + 1)
    ]
    with connection.cursor() as cursor:
        cursor.execute(
            _GROUPS_SQL,
            {
                "starts": midnights[:-1],
                "ends": midnights[1:],
                "import_id": import_id,
                "until": until,
            },
        )
        return cursor.fetchall()


P95 = 0.95


@contextmanager
def _one_snapshot() -> Iterator[None]:
    """A transaction whose statements all read one snapshot (REPEATABLE READ), so the p95's
    place is counted among the very runs it is read from; inside a caller's transaction,
    that transaction as it is (its level is set by its first statement)."""
    if connection.in_atomic_block:
        yield
        return
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        yield


def _p95(imp: ScheduledImport, since: datetime, until: datetime, timed: int) -> float | None:
    """`percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_ms)` of the window's `timed` runs
    with a duration, exactly as PostgreSQL computes it (the two durations around the 95 %
    place, interpolated in float8), read from the top of run_duration_rank_idx: the slowest
    twentieth of the runs, not every one of them sorted (0.5-0.8 s at 500,000 runs, 20-30 ms).

    `timed` is the number the series counted: both statements read one snapshot
    (_one_snapshot). Inside a caller's transaction they may not; if fewer runs are there
    than counted, PostgreSQL's own percentile answers (one more statement)."""
    if not timed:
        return None
    place = P95 * (timed - 1)
    low, high = math.floor(place), math.ceil(place)
    # From the top, the run at ascending place `low` is number `timed - 1 - low`.
    from_top = timed - 1 - low
    runs = imp.runs.filter(
        queued_at__gte=since,
        queued_at__lte=until,
        status__in=TIMED_STATUSES,
        duration_ms__isnull=False,
    )
    around = list(
        runs.order_by("-duration_ms").values_list("duration_ms", flat=True)[
            max(from_top - 1, 0) : from_top + 1
        ]
    )
    if len(around) != min(from_top + 1, 2):
        return runs.aggregate(p95=Percentile("duration_ms", P95))["p95"]
    low_value = float(around[-1])
    high_value = float(around[0]) if high > low else low_value
    # float8_lerp, as percentile_cont ends.
    return low_value + (place - low) * (high_value - low_value)


def _empty_series(first: date, days: int) -> list[dict[str, Any]]:
    """One entry per local day from `first`, every count 0."""
    return [
        {
            "date": (first + timedelta(days=offset)).isoformat(),
            "total": 0,
            **dict.fromkeys(ImportRun.Status.values, 0),
        }
        for offset in range(days)
    ]


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 1)
