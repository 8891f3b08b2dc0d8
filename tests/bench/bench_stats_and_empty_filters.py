"""Benchmark: an import's stats and run-list filters that match nothing, at a year of history
(lists4 hunt, issue 15 target 2).

Run with `make bench`, or alone as the deep pages bench is (README "Benchmark: deep pages"),
with this file's path; at a small scale with tests/bench/small.env. It builds
the deep pages bench's history (tests/bench/bench_deep_pages.py: 10,000 imports, 1,000,000
finished runs over a year, alice holding 800,000 of them), then one more import of alice's
with `BENCH_STATS_RUNS` runs over the year (500,000), and takes the timed-out runs of `ops`
away (a user with none). Each call is asked `BENCH_DEEP_ROUNDS` times (3) in the bench's own
process, first as the previous release did (its indexes built again inside a transaction
that is rolled back, and its stats statements), then as now. Printed per call: the median
wall ms and the answer's status, before and now. Timings are printed, never asserted.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from unittest import mock

import pytest
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.test import Client, override_settings

from schedules import stats
from schedules.models import ImportRun, ScheduledImport
from tests.bench import bench_deep_pages as deep
from tests.bench import bench_reads as history
from tests.bench import generated_runs
from tests.stats_support import stats_as_before

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(3600),
]

ROUNDS = int(os.environ.get("BENCH_DEEP_ROUNDS", "3"))
STATS_RUNS = int(os.environ.get("BENCH_STATS_RUNS", "500000"))


def add_one_busy_import(owner) -> ScheduledImport:
    """An import of `owner` with STATS_RUNS finished runs over the last year."""
    imp = ScheduledImport.objects.filter(owner=owner).order_by("id").first()
    imp.pk, imp.name, imp.timezone = None, "busy import", "Europe/Berlin"
    imp._state.adding = True
    [imp] = ScheduledImport.objects.bulk_create([imp])
    generated_runs.insert_runs(
        "SELECT g, %(imp)s AS imp, abs(hashint4(g)) %% 100 AS h"
        " FROM generate_series(1, %(runs)s) AS g",
        {"imp": imp.pk, "runs": STATS_RUNS},
    )
    return imp


def medians(call: Callable) -> tuple[float, object]:
    """The median ms of ROUNDS calls after one unmeasured call, and the last answer."""
    call()
    figures = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        answer = call()
        figures.append((time.perf_counter() - started) * 1000)
    return statistics.median(figures), answer


@override_settings(DEBUG=False)
def bench_stats_and_empty_filters_at_a_year_of_history() -> None:
    deep.build()
    User = get_user_model()
    alice, ops = User.objects.get(username="alice"), User.objects.get(username="ops")
    busy = add_one_busy_import(alice)
    # ops keeps his runs, but none of them timed out.
    ImportRun.objects.filter(scheduled_import__owner=ops, status="timed_out").update(
        status="failed"
    )
    history.vacuum()
    api_alice = Client(HTTP_AUTHORIZATION=f"Token {history.token_for(alice)}")
    api_ops = Client(HTTP_AUTHORIZATION=f"Token {history.token_for(ops)}")
    admin = Client()
    admin.force_login(ops)
    last_admin = ImportRun.objects.count() // 100 + 1
    print(f"\n{ImportRun.objects.count():,} runs; the busy import {busy.pk}: "
          f"{busy.runs.count():,} runs; ops: "
          f"{ImportRun.objects.filter(scheduled_import__owner=ops).count():,} runs")  # fmt: skip
    cases = [
        ("alice", api_alice, f"/api/v1/imports/{busy.pk}/stats/?days=366"),
        ("alice", api_alice, f"/api/v1/imports/{busy.pk}/stats/?days=30"),
        ("ops", api_ops, "/api/v1/runs/?status=timed_out"),
        ("alice", api_alice, "/api/v1/runs/?status=timed_out"),
        ("alice", api_alice, "/api/v1/runs/?trigger=catchup"),
        ("alice", api_alice, "/api/v1/runs/?trigger=api&status=failed"),
        ("alice", api_alice, f"/api/v1/imports/{busy.pk}/runs/?trigger=catchup"),
        ("alice", api_alice, f"/api/v1/imports/{busy.pk}/runs/?page=100"),
        ("admin", admin, f"/admin/schedules/importrun/?p={last_admin // 2}"),
        ("admin", admin, f"/admin/schedules/importrun/?p={last_admin}"),
    ]
    before: dict[str, tuple[float, object]] = {}
    started = time.monotonic()
    with transaction.atomic():
        with connection.cursor() as cursor:
            for statement in generated_runs.INDEXES_AS_0041:
                cursor.execute(statement)
            cursor.execute(f"ANALYZE {generated_runs.TABLE}")
        print(f"the previous release's indexes built in {time.monotonic() - started:.0f}s")
        with mock.patch.object(stats, "import_stats", stats_as_before):
            for _, client, path in cases:
                before[path] = medians(lambda: client.get(path))  # noqa: B023
        transaction.set_rollback(True)
    print(f"\n=== median of {ROUNDS}: wall ms and status, the previous release's, then now")
    print(f"{'who':6} {'call':58} | {'before':>13} | {'now':>13}")
    for who, client, path in cases:
        ms, response = medians(lambda: client.get(path))  # noqa: B023
        old_ms, old = before[path]
        print(
            f"{who:6} {path:58} | {old_ms:8.0f} {old.status_code:4} | "
            f"{ms:8.0f} {response.status_code:4}"
        )
