"""Benchmark: migration 0042 at a million runs (reviewD), both ways, and what an import's run
history costs while it runs.

Run alone as the other benches (README "Benchmarks"), this file's path; at a small scale with
tests/bench/small.env. `BENCH_MIGRATION_RUNS` finished runs (1,000,000) over a year, in
`BENCH_MIGRATION_IMPORTS` imports (100), a third of them in one busy import. Then:

1. 0042 taken back (to 0041's indexes) and applied again, each schema statement timed, and
   beside it, in another connection, the first page of the busy import's run history
   (`GET /imports/{id}/runs/`'s statement) asked over and over: its median and worst ms while
   each statement ran.
2. The history page with the foreign key's index alone (run_history_idx dropped inside a
   transaction that is rolled back): what it cost while 0042 first dropped the index before
   building its new definition, for as long as that build took (printed in 1).

Timings are printed, never asserted.
"""

from __future__ import annotations

import os
import statistics
import threading
import time

import pytest
from django.core.management import call_command
from django.db import connection, connections, transaction
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.test import Client

from schedules.models import ImportRun, ScheduledImport
from tests.bench import bench_reads as history
from tests.bench import generated_runs
from tests.bench.figures import report
from tests.factories import make_import

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(3600),
]

RUNS = int(os.environ.get("BENCH_MIGRATION_RUNS", "1000000"))
IMPORTS = int(os.environ.get("BENCH_MIGRATION_IMPORTS", "100"))
BEFORE_0042 = "0041_lost_ends_untold_are_found_by_their_own_index"


def build(owner) -> ScheduledImport:
    """RUNS finished runs over the last year in IMPORTS imports, a third in the first one."""
    imports = [make_import(owner, f"https://example.com/{n}.csv", name=f"m {n}").pk
               for n in range(IMPORTS)]  # fmt: skip
    generated_runs.insert_runs(
        "SELECT g, CASE WHEN g %% 3 = 0 THEN %(busy)s"
        " ELSE (%(imports)s::int[])[1 + g %% %(count)s] END AS imp,"
        " abs(hashint4(g)) %% 100 AS h FROM generate_series(1, %(runs)s) AS g",
        {"busy": imports[0], "imports": imports, "count": IMPORTS, "runs": RUNS},
    )
    history.vacuum()
    return ScheduledImport.objects.get(pk=imports[0])


class HistoryReader(threading.Thread):
    """Asks the busy import's first history page over and over, noting each answer's ms."""

    def __init__(self, path: str, client: Client) -> None:
        super().__init__(daemon=True)
        self.path, self.client = path, client
        self.times: list[tuple[float, float]] = []  # (finished at, ms)
        self.stop = threading.Event()

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                started = time.perf_counter()
                response = self.client.get(self.path)
                assert response.status_code == 200, response.content[:300]
                self.times.append((time.perf_counter(), (time.perf_counter() - started) * 1000))
        finally:
            connections.close_all()

    def between(self, start: float, end: float) -> list[float]:
        return [ms for at, ms in self.times if start <= at <= end + 0.5]


def migrate_watched(target: str | None, reader: HistoryReader) -> None:
    execute = BaseDatabaseSchemaEditor.execute

    def timed(editor, sql, params=()):
        started = time.perf_counter()
        execute(editor, sql, params)
        ended = time.perf_counter()
        during = reader.between(started, ended)
        report(
            f"  {str(sql)[:70]}",
            seconds=round(ended - started, 1),
            history_pages=len(during),
            median_ms=round(statistics.median(during)) if during else "-",
            worst_ms=round(max(during)) if during else "-",
        )

    BaseDatabaseSchemaEditor.execute = timed
    try:
        started = time.perf_counter()
        call_command("migrate", "schedules", *([target] if target else []), verbosity=0)
        report(f"migrate to {target or 'the last'}", seconds=round(time.perf_counter() - started))
    finally:
        BaseDatabaseSchemaEditor.execute = execute


def bench_migration_0042_at_a_million_runs(alice):
    busy = build(alice)
    client = Client(HTTP_AUTHORIZATION=f"Token {history.token_for(alice)}")
    path = f"/api/v1/imports/{busy.pk}/runs/"
    print(f"\n{ImportRun.objects.count():,} runs; the busy import: {busy.runs.count():,}")

    reader = HistoryReader(path, client)
    reader.start()
    try:
        time.sleep(2)
        print("\n=== 0042 taken back, each statement and the history page meanwhile")
        migrate_watched(BEFORE_0042, reader)
        print("\n=== 0042 applied, each statement and the history page meanwhile")
        migrate_watched(None, reader)
    finally:
        reader.stop.set()
        reader.join()

    # The history pages with the foreign key's index alone, as while 0042 first rebuilt it: the
    # busy import's, and an import of a hundredth of the runs.
    medium = ScheduledImport.objects.filter(owner=alice).exclude(pk=busy.pk).order_by("pk")[0]
    for name, imp, call in (
        ("busy", busy, "runs/"),
        ("medium", medium, "runs/"),
        ("busy", busy, "runs/?page=100"),
        ("busy", busy, "stats/?days=30"),
    ):
        page = f"/api/v1/imports/{imp.pk}/{call}"
        report(
            f"the {name} import's {call}, {imp.runs.count():,} runs (median ms of 3)",
            with_run_history_idx=round(page_ms(client, page, drop=False)),
            with_the_foreign_keys_index_alone=round(page_ms(client, page, drop=True)),
        )


def page_ms(client: Client, path: str, drop: bool) -> float:
    """The median ms of 3 answers of `path` (after one), run_history_idx dropped inside a
    transaction rolled back if `drop`."""
    with transaction.atomic():
        if drop:
            with connection.cursor() as cursor:
                cursor.execute("DROP INDEX run_history_idx")
        assert client.get(path).status_code == 200
        times = []
        for _ in range(3):
            started = time.perf_counter()
            assert client.get(path).status_code == 200
            times.append((time.perf_counter() - started) * 1000)
        transaction.set_rollback(True)
    return statistics.median(times)
