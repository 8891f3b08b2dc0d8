"""Benchmark: a drop folder's backlog of deliveries drained by one trigger (tasks.deliveries).

Run with `make bench` (or this file alone). `BENCH_DRAIN_FILES` (500) deliveries of 100 rows
wait in one drop folder, for one import of a glob with move_processed (an hourly interval, so
no tick helps). One Procfile worker (concurrency 2) starts, and one run is triggered: each run
that imports a delivery queues the next while another waits, until all are in processed/.

Printed: the time from the trigger until the last delivery was filed away, deliveries per
second, the runs' own duration (p50, p95) and the gap between one run's end and the next run's
start (p50, p95: the drain's own cost: the listing, the query of what was imported, the new run
through the broker). Beside them, in the same process, what choosing the next delivery costs
(`next_delivery`, p50 of 20) with all of them still waiting, and with one left. Before the
drain, each tick took one delivery: with an hourly schedule the same backlog took FILES hours.
Timings are printed, never asserted.
"""

from __future__ import annotations

import os
import time

import pytest
from django.conf import settings

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
    pytest.mark.timeout(1800),
]

FILES = int(os.environ.get("BENCH_DRAIN_FILES", "500"))
ROWS = 100
ENV = {**FAST, "WORKER_CONCURRENCY": "2"}


def delivery(n: int) -> str:
    return "sku,name,price\n" + "".join(f"S{k},item {k},{n}.{k:02d}\n" for k in range(ROWS))


def choosing_costs_ms(imp) -> float:
    def imported(etags: list[str]) -> set[str]:
        return processed_files.imported_before(imp.pk, etags)

    timings = []
    for _ in range(20):
        started = time.perf_counter()
        next_delivery(imp.source_url, imported)
        timings.append((time.perf_counter() - started) * 1000)
    return round(percentile(timings, 0.5), 2)


def bench_a_backlog_of_deliveries_drained_by_one_trigger(alice, drop, processes):
    now = time.time()
    for n in range(FILES):
        put(drop / f"products_{n:05d}.csv", delivery(n), mtime=now - 3600 + n)
    imp = make_import(
        alice, f"file://{drop}/products_*.csv", move_processed=True, interval_seconds=3600
    )
    choose_all_waiting_ms = choosing_costs_ms(imp)
    processes.start("worker", IMPORT_DROP_DIRS=str(drop), **ENV)
    wait_for(lambda: "ready." in processes.logs(), 60, what="the worker\n" + processes.logs())

    clock = time.monotonic()
    first = services.enqueue_run(imp, trigger=ImportRun.Trigger.API)
    last = drop / "processed" / f"products_{FILES - 1:05d}.csv"
    wait_for(last.exists, 1500, what="the backlog drained\n" + processes.logs())
    drained_s = time.monotonic() - clock
    put(drop / "products_last.csv", delivery(FILES))
    choose_one_waiting_ms = choosing_costs_ms(imp)

    runs = list(
        imp.runs.filter(pk__gte=first.pk)
        .order_by("pk")
        .values_list("started_at", "finished_at", "duration_ms", "source_file")
    )
    in_order = [source.rsplit("/", 1)[1] for *_times, source in runs] == [
        f"products_{n:05d}.csv" for n in range(FILES)
    ]
    gaps = [(runs[i + 1][0] - runs[i][1]).total_seconds() * 1000 for i in range(len(runs) - 1)]
    durations = [duration for _s, _f, duration, _p in runs]
    report(
        "a backlog of deliveries drained by one trigger",
        deliveries=FILES,
        rows_each=ROWS,
        runs=len(runs),
        in_order=in_order,
        drained_s=round(drained_s, 1),
        deliveries_per_s=round(FILES / drained_s, 1),
        run_p50_ms=percentile(durations, 0.5),
        run_p95_ms=percentile(durations, 0.95),
        gap_p50_ms=round(percentile(gaps, 0.5), 1),
        gap_p95_ms=round(percentile(gaps, 0.95), 1),
        choose_next_all_waiting_ms=choose_all_waiting_ms,
        choose_next_one_waiting_ms=choose_one_waiting_ms,
        settle_s=settings.FILE_SETTLE_SECONDS,
    )
