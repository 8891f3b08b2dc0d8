"""Benchmark: a drop folder's backlog of deliveries drained by one trigger (tasks.deliveries),
at 300, 2,000 and 10,000 deliveries waiting.

Run with `make bench` (or this file alone). For each size (`BENCH_DRAIN_SIZES`, default
"300,2000,10000"; `BENCH_DRAIN_FILES=N` runs N alone) that many deliveries of 100 rows wait in
one drop folder, for one import of a glob with move_processed (an hourly interval, so no tick
helps). One Procfile worker (concurrency 2) starts, and one run is triggered: each run that
imports a delivery queues the next while another waits, until all are in processed/.
`BENCH_DRAIN_SAMPLE=S` stops each drain after its first S deliveries (the import is paused):
the old way of choosing drained 10,000 in 1.8 h.

Printed per size: the time from the trigger until the last delivery (of the sample) was filed
away, per delivery, the runs' own duration (p50, p95) and the gap between one run's end and the
next run's start (p50, p95: the drain's own cost: the choice of the next delivery, the new run
through the broker). Beside them, in the same process, what choosing the next delivery costs
(`next_delivery`): the first choice of a process (it orders the whole backlog), then the p50 of
20 with every delivery waiting, and after the drain (the import's runs in the database); and
the query of what was imported among the head's 8 files after the drain, as it is and with an
index of (import, source_etag) made for the measure (no migration makes it yet: without it the
query reads every run of the import). Timings are printed, never asserted.
"""

from __future__ import annotations

import os
import time

import pytest
from django.conf import settings
from django.db import connection

from schedules import processed_files, services
from schedules.models import ImportRun
from tasks.drop_folder import next_delivery
from tests.bench.figures import percentile, report
from tests.conftest import wait_for
from tests.drop_support import put
from tests.factories import make_import
from tests.reliability import FAST

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.processes,
    pytest.mark.timeout(7200),
]

SIZES = [
    int(size)
    for size in (
        os.environ.get("BENCH_DRAIN_FILES") or os.environ.get("BENCH_DRAIN_SIZES", "300,2000,10000")
    ).split(",")
]
SAMPLE = int(os.environ.get("BENCH_DRAIN_SAMPLE", "0"))
ROWS = 100
ENV = {**FAST, "WORKER_CONCURRENCY": "2"}


def delivery(n: int) -> str:
    return "sku,name,price\n" + "".join(f"S{k},item {k},{n}.{k:02d}\n" for k in range(ROWS))


def name(n: int) -> str:
    return f"products_{n:05d}.csv"


def choosing_costs_ms(imp) -> tuple[float, float]:
    """The first choice's time and the p50 of 20 more, in ms."""

    def imported(etags: list[str]) -> set[str]:
        return processed_files.imported_before(imp.pk, etags)

    timings = []
    for _ in range(21):
        started = time.perf_counter()
        next_delivery(imp.source_url, imported)
        timings.append((time.perf_counter() - started) * 1000)
    return round(timings[0], 2), round(percentile(timings[1:], 0.5), 2)


def query_ms(imp, etags: list[str]) -> float:
    timings = []
    for _ in range(20):
        started = time.perf_counter()
        processed_files.imported_before(imp.pk, etags)
        timings.append((time.perf_counter() - started) * 1000)
    return round(percentile(timings, 0.5), 2)


def query_with_an_index_ms(imp, etags: list[str]) -> float:
    """query_ms with an index of the runs' versions per import, made for the measure alone:
    without one, the query reads every run of the import (no index holds source_etag)."""
    table = ImportRun._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE INDEX bench_run_source_etag ON {table} (scheduled_import_id, source_etag)"
        )
        cursor.execute(f"ANALYZE {table}")
    try:
        return query_ms(imp, etags)
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP INDEX bench_run_source_etag")


@pytest.mark.parametrize("files", SIZES)
def bench_a_backlog_of_deliveries_drained_by_one_trigger(alice, drop, processes, files):
    now = time.time()
    for n in range(files):
        put(drop / name(n), delivery(n), mtime=now - 3 * files + n)
    imp = make_import(
        alice, f"file://{drop}/products_*.csv", move_processed=True, interval_seconds=3600
    )
    choose_first_ms, choose_all_waiting_ms = choosing_costs_ms(imp)
    # (each user reads their own folder in the listed ones: `drop` is alice's)
    processes.start("worker", IMPORT_DROP_DIRS=str(drop.parent), **ENV)
    wait_for(lambda: "ready." in processes.logs(), 60, what="the worker\n" + processes.logs())

    taken = min(files, SAMPLE) if SAMPLE else files
    clock = time.monotonic()
    first = services.enqueue_run(imp, trigger=ImportRun.Trigger.API)
    last = drop / "processed" / name(taken - 1)
    wait_for(last.exists, 7000, interval=0.05, what="the backlog drained\n" + processes.logs())
    drained_s = time.monotonic() - clock
    if taken < files:
        services.pause_import(imp)  # (the drain stops after the run going on)
        wait_for(lambda: not imp.runs.filter(status__in=ImportRun.ACTIVE_STATUSES).exists(), 60)
    else:
        put(drop / "products_last.csv", delivery(files))
    choose_after_first_ms, choose_after_ms = choosing_costs_ms(imp)
    head = sorted(drop.glob("products_*.csv"))[:8]
    etags = [f"file:{p.stat().st_size}:{p.stat().st_mtime_ns}:x" for p in head]

    runs = list(
        imp.runs.filter(pk__gte=first.pk, status="succeeded")
        .order_by("pk")
        .values_list("started_at", "finished_at", "duration_ms", "source_file")
    )[:taken]
    in_order = [source.rsplit("/", 1)[1] for *_times, source in runs] == [
        name(n) for n in range(taken)
    ]
    gaps = [(runs[i + 1][0] - runs[i][1]).total_seconds() * 1000 for i in range(len(runs) - 1)]
    durations = [duration for _s, _f, duration, _p in runs]
    report(
        f"a backlog of {files} deliveries drained by one trigger",
        waiting=files,
        drained=taken,
        rows_each=ROWS,
        in_order=in_order,
        drained_s=round(drained_s, 1),
        per_delivery_ms=round(drained_s * 1000 / taken, 1),
        deliveries_per_s=round(taken / drained_s, 1),
        run_p50_ms=percentile(durations, 0.5),
        run_p95_ms=percentile(durations, 0.95),
        gap_p50_ms=round(percentile(gaps, 0.5), 1),
        gap_p95_ms=round(percentile(gaps, 0.95), 1),
        choose_first_ms=choose_first_ms,
        choose_all_waiting_ms=choose_all_waiting_ms,
        choose_after_drain_first_ms=choose_after_first_ms,
        choose_after_drain_ms=choose_after_ms,
        imported_query_after_drain_ms=query_ms(imp, etags),
        imported_query_with_an_index_ms=query_with_an_index_ms(imp, etags),
        runs_in_database=imp.runs.count(),
        settle_s=settings.FILE_SETTLE_SECONDS,
    )
