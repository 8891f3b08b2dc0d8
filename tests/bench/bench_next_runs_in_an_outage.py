"""Benchmark: the dashboard's next runs and the admin's imports sorted by "next run", at 10,000
imports and a year of history, while beat is down.

Run with `make bench`, or alone:
  .venv/bin/python -m project.devservices run --test -- .venv/bin/python -m pytest -s \
      -p no:cacheprovider -o python_files='bench_*.py' -o python_functions='bench_*' \
      tests/bench/bench_next_runs_in_an_outage.py
It builds the reads bench's history (10,000 imports of five users over 48 schedules in four
zones, then `BENCH_READS_RUNS` finished runs over a year, 1,000,000; tests/bench/bench_reads.py)
and measures three states of it, in this process, on the real database:

- beat running: every import's next tick a quarter of an hour ahead;
- an outage: `BENCH_OUTAGE_OVERDUE` imports (1,000, every tenth) overdue by an hour, half of
  them `coalesce`, half `skip` (the bench's schedules: a few hundred groups of schedule,
  catch-up and tick due);
- the worst outage: as many overdue imports, each with a daily cron rule of its own
  (`coalesce`: the dearest rule to work out), more groups than a list works out.

Printed per state: the dashboard's next runs (`dashboard.upcoming_runs`, what `health.json`
polls) as a poll in a new second makes them (schedules.display's per-second entries cleared
first): median wall ms over `BENCH_OUTAGE_ROUNDS` (20), statements; whether its ten are the ten
soonest runs beat makes (every active import's `next_run_listed` worked out); and the admin's
imports list, by default and sorted by next run each way: median wall ms, statements, whether
its first page is in the order of the runs it shows; and how many overdue imports the next runs
could not place (the page and the sorted list say so). Timings are printed, never asserted.
"""

from __future__ import annotations

import os
import re
import statistics
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client, override_settings
from django.test.utils import CaptureQueriesContext

from common import database_clock
from schedules import dashboard, display
from schedules.models import ScheduledImport
from tests.bench import bench_reads as history
from tests.bench.figures import report

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(3600),
]

OVERDUE = int(os.environ.get("BENCH_OUTAGE_OVERDUE", "1000"))
ROUNDS = int(os.environ.get("BENCH_OUTAGE_ROUNDS", "20"))
IMPORTS_LIST = "/admin/schedules/scheduledimport/"
FIELDS = ("schedule_type", "cron_expression", "interval_seconds", "timezone")


def overdue_by_an_hour(ids: list[int]) -> None:
    """`ids` overdue by an hour: their next tick the last one before an hour ago (beat down
    since), every other one `coalesce`, the rest `skip`."""
    an_hour_ago = database_clock.now() - timedelta(hours=1)
    chosen = ScheduledImport.objects.filter(pk__in=ids)
    for values in chosen.values_list(*FIELDS).order_by().distinct():
        key = dict(zip(FIELDS, values, strict=True))
        tick = ScheduledImport(**key).tick_for(an_hour_ago)
        chosen.filter(**key).update(next_run_at=tick)
    for n, catchup in enumerate(("coalesce", "skip")):
        ScheduledImport.objects.filter(pk__in=ids[n::2]).update(catchup=catchup)


def each_its_own_daily_rule(ids: list[int]) -> None:
    """`ids` each a daily rule of its own in UTC (`coalesce`), overdue by a day or less."""
    for n, pk in enumerate(ids):
        rule = f"{n % 60} {n // 60 % 24} * * *"
        ScheduledImport.objects.filter(pk=pk).update(
            schedule_type="cron", cron_expression=rule, interval_seconds=None, timezone="UTC",
            catchup="coalesce",
        )  # fmt: skip
    overdue_by_an_hour(ids)
    ScheduledImport.objects.filter(pk__in=ids).update(catchup="coalesce")


def soonest_ten() -> list[tuple]:
    """The ten soonest runs beat makes, every active import's worked out (the reference)."""
    active = ScheduledImport.objects.filter(status="active", next_run_at__isnull=False)
    listed = [
        (display.next_run_of(kind, cron, interval, zone, catchup, due).isoformat(), pk)
        for pk, kind, cron, interval, zone, catchup, due in active.values_list(
            "pk", *FIELDS, "catchup", "next_run_at"
        )
    ]
    return sorted(listed)[: dashboard.UPCOMING_LIMIT]


def a_poll() -> tuple[float, int, list[tuple], int]:
    display._next_run.cache_clear()  # a poll 15 s later finds no entry of this second
    started = time.perf_counter()
    with CaptureQueriesContext(connection) as ctx:
        upcoming, unplaced = dashboard.next_runs()
    wall = (time.perf_counter() - started) * 1000
    shown = [(row["next_run_at"], row["id"]) for row in upcoming]
    return wall, len(ctx.captured_queries), shown, unplaced.imports if unplaced else 0


def overdue_groups() -> int:
    """How many groups of schedule, catch-up and tick due the overdue imports make."""
    cutoff = database_clock.now() - timedelta(minutes=1)
    overdue = ScheduledImport.objects.filter(status="active", next_run_at__lte=cutoff)
    return overdue.values_list(*FIELDS, "catchup", "next_run_at").order_by().distinct().count()


def measure_dashboard(state: str) -> None:
    groups = overdue_groups()
    polls = [a_poll() for _ in range(ROUNDS)]
    shown, expected = polls[-1][2], soonest_ten()
    report(
        f"dashboard next runs, {state}",
        median_ms=f"{statistics.median(p[0] for p in polls):.1f}",
        max_ms=f"{max(p[0] for p in polls):.1f}",
        statements=polls[-1][1],
        overdue_groups=groups,
        soonest_ten=shown == expected,
        shown=len(shown),
        of_them_soonest=len(set(shown) & set(expected)),
        # The overdue imports past the groups worked out, which the page says it left out.
        unplaced=polls[-1][3],
    )


def next_run_column(client: Client) -> str:
    page = client.get(IMPORTS_LIST).content.decode()
    found = re.search(r'class="sortable column-next_run[^"]*">.*?href="\?o=(\d+)"', page, re.S)
    assert found, "the next run column is sortable"
    return found[1]


def in_listed_order(page: bytes, descending: bool) -> bool:
    """The page's next runs (times of its "next run" cells) are in order."""
    cells = re.findall(rb'<td class="field-next_run">(?:<time datetime="([^"]+)")?', page)
    times = [cell.decode() for cell in cells if cell]
    return times == sorted(times, reverse=descending)


def measure_admin(client: Client, state: str, column: str) -> None:
    for label, query in (("default", ""), ("by next run", f"?o={column}"),
                         ("by next run desc", f"?o=-{column}")):  # fmt: skip
        path = IMPORTS_LIST + query
        client.get(path)
        walls, statements, page = [], 0, b""
        for _ in range(max(ROUNDS // 4, 3)):
            display._next_run.cache_clear()
            started = time.perf_counter()
            with CaptureQueriesContext(connection) as ctx:
                response = client.get(path)
            walls.append((time.perf_counter() - started) * 1000)
            statements, page = len(ctx.captured_queries), response.content
        assert response.status_code == 200
        report(
            f"admin imports list {label}, {state}",
            median_ms=f"{statistics.median(walls):.1f}",
            statements=statements,
            in_order=in_listed_order(page, "desc" in label) if query else "-",
            says_unplaced=b"could not be placed by their next run" in page,
        )


def explain(sql: str, params: list) -> str:
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS OFF) " + sql, params)
        return "\n    ".join(row[0] for row in cursor.fetchall())


@override_settings(DEBUG=False)
def bench_next_runs_in_an_outage() -> None:
    started = time.monotonic()
    import_ids, client = history.a_year_for_ops()
    column = next_run_column(client)

    measure_dashboard("beat running")
    measure_admin(client, "beat running", column)

    overdue = import_ids[:: max(len(import_ids) // OVERDUE, 1)][:OVERDUE]
    overdue_by_an_hour(overdue)
    history.vacuum()
    state = f"{len(overdue):,} overdue"
    measure_dashboard(state)
    measure_admin(client, state, column)
    cutoff = database_clock.now() - timedelta(minutes=1)
    print("  plan of the imports not overdue:\n    " + explain(
        "SELECT id FROM schedules_scheduledimport WHERE status = 'active' AND next_run_at > %s"
        " ORDER BY next_run_at, id LIMIT 10", [cutoff]))  # fmt: skip

    history.keep_ticks_ahead()
    each_its_own_daily_rule(overdue)
    history.vacuum()
    state = f"{len(overdue):,} overdue, each its own daily rule"
    measure_dashboard(state)
    measure_admin(client, state, column)
    print(f"(bench total {time.monotonic() - started:.0f}s)")
