"""Benchmark: a `/metrics` scrape at 10,000 imports (BENCH_METRICS_IMPORTS), each with four
tallies (succeeded, failed, partial, skipped), as a deployment of that size has after a while.

Prints each scrape's size, lines, wall time and the web process's CPU (in process, through
Django's test client), and, in the same run, the per-import families written the way they were
before (model instances and prometheus_client's samples; that writer is kept in
tests/test_metrics_at_ten_thousand_imports.py). Prometheus gives up on a scrape after 10 s by
default (`scrape_timeout`).
Timings are printed, never asserted.
"""

from __future__ import annotations

import base64
import os
import time

import pytest
from django.db import connection

from schedules import metrics_per_import
from tests.bench import bench_reads
from tests.test_metrics_at_ten_thousand_imports import old_text

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(900)]

IMPORTS = int(os.environ.get("BENCH_METRICS_IMPORTS", "10000"))
SCRAPES = 3


def add_tallies() -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO schedules_runtally (scheduled_import_id, status, runs, rows_read,"
            " rows_inserted, rows_updated, rows_unchanged, rows_deleted, rows_failed,"
            " duration_count, duration_ms_sum, duration_buckets)"
            " SELECT i.id, s, 100, 100000, 10, 10, 99980, 0, 0, 100, 200000,"
            " ARRAY[0,0,10,90,0,0,0,0,0,0,0]::bigint[]"
            " FROM schedules_scheduledimport i,"
            " unnest(ARRAY['succeeded','failed','partial','skipped']) s"
        )
        cursor.execute("ANALYZE")


def timed(action) -> tuple[object, float, float]:
    wall, cpu = time.perf_counter(), time.thread_time()
    result = action()
    return result, time.perf_counter() - wall, time.thread_time() - cpu


def bench_metrics_at_ten_thousand_imports(client, settings, monkeypatch) -> None:
    settings.FLOWER_BASIC_AUTH = "ops:bench"
    auth = "Basic " + base64.b64encode(b"ops:bench").decode()
    monkeypatch.setattr(bench_reads, "IMPORTS", IMPORTS)
    imports = bench_reads.make_imports(bench_reads.make_users())
    add_tallies()
    print(f"\n/metrics at {len(imports):,} imports, 4 tallies each")
    for n in range(SCRAPES):
        response, wall, cpu = timed(lambda: client.get("/metrics", HTTP_AUTHORIZATION=auth))
        assert response.status_code == 200
        body = response.content
        lines = body.count(b"\n")
        print(f"  scrape {n + 1}: {len(body) / 1e6:.1f} MB, {lines:,} lines,"
              f" {wall:.2f} s wall, {cpu:.2f} s CPU")  # fmt: skip
    new, wall, cpu = timed(metrics_per_import.text)
    print(f"  the per-import families alone: {wall:.2f} s wall, {cpu:.2f} s CPU")
    old, wall, cpu = timed(old_text)
    print(f"  the same families as written before: {wall:.2f} s wall, {cpu:.2f} s CPU")
    print(f"  the same text: {sorted(old.split('# HELP ')) == sorted(new.split('# HELP '))}")
