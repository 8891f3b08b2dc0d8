"""Benchmark: the sweep's scan of lost attempts' ends not told yet, at a million runs (sweep5
hunt).

`BENCH_UNTOLD_RUNS` finished runs (1,000,000) at `BENCH_UNTOLD_RATE` runs an hour (20,800, the
rate the sweep4 hunt measured the scan at: two days of runs), one in 500 with a lost attempt's
end told (`lost_task_end` told true), and `BENCH_UNTOLD_ENDS` (20) whose end is not told yet,
sent again and waiting: half queued within the last 6 hours, half before that (a long import's,
or one that waited its turn). And as many untold ends as old, ended long ago, that no pass
tells any more but stay in the index until retention deletes their runs.

Printed, before (the scan bounded to runs queued in the last 6 hours, on the queued_at index,
without run_lost_end_untold_idx) and now (no bound by age, on that index): the median wall ms
of `BENCH_UNTOLD_ROUNDS` scans (5), the buffers one scan reads, the untold ends it finds, and the
index it reads; then the index's build time (concurrently, as migration 0041 builds it) and its
size. Timings are printed, never asserted.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.db.models import Q
from django.test import override_settings

from common import database_clock
from schedules import services
from schedules.models import ImportRun
from tasks import lost_tasks
from tests.bench import bench_reads as history
from tests.bench import generated_runs
from tests.bench.figures import report

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(1800)]

RUNS = int(os.environ.get("BENCH_UNTOLD_RUNS", "1000000"))
RATE = int(os.environ.get("BENCH_UNTOLD_RATE", "20800"))
UNTOLD = int(os.environ.get("BENCH_UNTOLD_ENDS", "20"))
ROUNDS = int(os.environ.get("BENCH_UNTOLD_ROUNDS", "5"))
INDEX = "run_lost_end_untold_idx"
TABLE = ImportRun._meta.db_table
# The bound the scan had (tasks.lost_tasks before sweep5).
QUEUED_WITHIN = timedelta(hours=6)


def add_runs() -> None:
    """RUNS finished runs, run g queued g/RATE hours ago (the reads bench's generated runs,
    their year shrunk to RUNS/RATE hours), round-robin over the imports."""
    generated_runs.insert_runs(
        "SELECT g, ids[1 + g %% array_length(ids, 1)] AS imp, abs(hashint4(g)) %% 100 AS h"
        " FROM generate_series(1, %(count)s) AS g,"
        "      (SELECT array_agg(id ORDER BY id) AS ids FROM schedules_scheduledimport) AS i",
        # (`runs` scales the generator's year: 365 days * g / runs = g / RATE hours)
        {"count": RUNS, "runs": 365 * 24 * RATE},
    )


def note_lost_ends() -> None:
    """One run in 500 with its lost end told; UNTOLD sent again and waiting, untold, half
    queued within 6 hours and half before; UNTOLD more untold, ended days ago."""
    told = json.dumps({services.LOST_TASK_END: {"task": "t", "told": True, "by": "sweeper"}})
    untold = json.dumps({services.LOST_TASK_END: {"task": "t", "told": False, "by": "sweeper"}})
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {TABLE} SET error_details = error_details || %s::jsonb WHERE id %% 500 = 0",
            [told],
        )
        # Run g (queued g/RATE hours ago) has the id first + g - 1.
        cursor.execute(f"SELECT min(id) FROM {TABLE}")
        first = cursor.fetchone()[0]
        hour = RATE
        recent = [first + hour * 5 * n // UNTOLD + 7 for n in range(UNTOLD // 2)]  # within 5 h
        older = [first + hour * (7 + n) + 7 for n in range(UNTOLD - len(recent))]  # 7 h and more
        cursor.execute(
            f"UPDATE {TABLE} SET error_details = error_details || %s::jsonb, status = 'queued',"
            " finished_at = NULL, started_at = NULL WHERE id = ANY(%s)",
            [untold, recent + older],
        )
        long_ended = [first + hour * 40 + n * 13 for n in range(UNTOLD)]
        cursor.execute(
            f"UPDATE {TABLE} SET error_details = error_details || %s::jsonb WHERE id = ANY(%s)",
            [untold, long_ended],
        )


def scan_before(now):
    return (
        ImportRun.objects.filter(
            queued_at__gte=now - QUEUED_WITHIN,
            error_details__contains={services.LOST_TASK_END: {"told": False}},
        )
        .filter(
            Q(finished_at__gte=now - timedelta(seconds=lost_tasks.UNTOLD_ENDS_WITHIN_SECONDS))
            | Q(finished_at__isnull=True)
        )
        .order_by()[: lost_tasks.UNTOLD_ENDS_PER_PASS]
    )


def scan_now(now):
    return lost_tasks.untold_ends(now)[: lost_tasks.UNTOLD_ENDS_PER_PASS]


def measure(name: str, scan) -> None:
    now = database_clock.now()
    found = len(list(scan(now)))  # (warms the cache, as a sweep every minute keeps it)
    walls = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        list(scan(now))
        walls.append((time.perf_counter() - started) * 1000)
    plan = scan(now).explain(analyze=True, buffers=True)
    indexes = sorted(set(re.findall(r"(?:Index|Bitmap Index) (?:Only )?Scan[^\n]* on (\w+)", plan)))
    # (the top node's: the first Buffers line)
    top = re.search(r"Buffers: shared hit=(\d+)(?: read=(\d+))?", plan)
    buffers = int(top[1]) + int(top[2] or 0) if top else 0
    execution = re.search(r"Execution Time: ([\d.]+) ms", plan)
    report(
        name,
        runs=f"{RUNS:,}",
        untold_found=f"{found}/{UNTOLD}",
        median_ms=f"{statistics.median(walls):.2f}",
        execution_ms=execution[1] if execution else "?",
        buffers=buffers,
        reads=",".join(indexes) or "the table",
    )


@override_settings(DEBUG=False)
def bench_the_scan_of_untold_lost_ends_at_a_million_runs() -> None:
    started = time.monotonic()
    history.make_imports(history.make_users())
    add_runs()
    note_lost_ends()
    history.vacuum()
    print(f"\nbuilt {RUNS:,} runs ({RUNS / RATE:.0f} h at {RATE:,} an hour) in "
          f"{time.monotonic() - started:.0f}s")  # fmt: skip

    index = next(i for i in ImportRun._meta.indexes if i.name == INDEX)
    with connection.cursor() as cursor:
        cursor.execute(f'DROP INDEX "{INDEX}"')
    try:
        measure("untold lost ends, before: queued in the last 6 h", scan_before)
    finally:
        with connection.schema_editor(atomic=False) as editor:
            building = time.perf_counter()
            editor.execute(index.create_sql(ImportRun, editor, concurrently=True))
            built_ms = (time.perf_counter() - building) * 1000
        history.vacuum()
    measure("untold lost ends, now: their own index, no bound by age", scan_now)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_relation_size(%s)", [INDEX])
        size = cursor.fetchone()[0]
    report("untold lost ends, the index", build_ms=f"{built_ms:.0f}", size_bytes=size)
