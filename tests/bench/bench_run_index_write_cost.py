"""Benchmark: what the runs table's indexes cost each run's writes (reviewD, issue 15's small
runs), with migration 0041's indexes, 0042's, and 0042's without the widened history index.

Run alone as the other benches (README "Benchmarks"), this file's path; at a small scale with
tests/bench/small.env. Figures are cluster-wide WAL: run it on a PostgreSQL of its own
(DATABASE_URL), not one other suites write to at the same time.

1. Which columns each UPDATE of a real run writes: `BENCH_WRITE_PROBES` real runs of a small
   CSV (the worker's path, tasks.runner.execute in this process), an AFTER UPDATE trigger
   noting the columns each UPDATE changed; and whether PostgreSQL could update the row in
   place (HOT: no index entry written) under each index set (pg_stat_user_tables).
2. Per index set, `BENCH_WRITE_RUNS` runs inserted and walked queued -> running -> ended as
   the runner writes them (one autocommit statement each, the columns step 1 saw), then the
   same number of real runs: wall ms per run and WAL bytes per run.

Timings are printed, never asserted.
"""

from __future__ import annotations

import os
import time
from collections import Counter

import pytest
from django.db import connection

from schedules.models import ImportRun
from tasks import runner
from tests.bench import generated_runs
from tests.bench.bench_small_runs import BenchTask, csv_body
from tests.bench.figures import report
from tests.factories import make_import

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(3600),
]

RUNS = int(os.environ.get("BENCH_WRITE_RUNS", "2000"))
PROBES = int(os.environ.get("BENCH_WRITE_PROBES", "40"))
ROUNDS = int(os.environ.get("BENCH_WRITE_ROUNDS", "2"))
TABLE = ImportRun._meta.db_table
HISTORY_NOW = (
    f"CREATE INDEX run_history_idx ON {TABLE} (scheduled_import_id, queued_at DESC, id DESC) "
    "INCLUDE (status, duration_ms, rows_read, rows_inserted, rows_updated, rows_unchanged, "
    "rows_deleted, rows_failed)"
)
INDEX_SETS: dict[str, list[str]] = {
    # Migration 0041's: what the previous release wrote per run.
    "0041": generated_runs.INDEXES_AS_0041,
    # Migration 0042's, as the models say (what the test database was migrated to).
    "0042": [],
}


def definitions() -> dict[str, str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s", [TABLE])
        return dict(cursor.fetchall())


def use(statements: list[str], original: dict[str, str]) -> None:
    """The table's indexes as migrated, then changed by `statements`."""
    with connection.cursor() as cursor:
        for name in set(definitions()) - set(original):
            cursor.execute(f"DROP INDEX {name}")
        for name, definition in original.items():
            if name not in definitions():
                cursor.execute(definition)
        for statement in statements:
            cursor.execute(statement)
        cursor.execute(f"VACUUM ANALYZE {TABLE}")


def table_counters() -> tuple[int, int]:
    """(n_tup_upd, n_tup_hot_upd) of the runs table, after every backend published its own."""
    time.sleep(1.2)  # a backend publishes its counters a second after the previous at most
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_force_next_flush()")
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(
            "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = %s", [TABLE]
        )
        return cursor.fetchone()


def index_sizes() -> dict[str, int]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexrelid::regclass::text, pg_relation_size(indexrelid) FROM pg_index"
            " WHERE indrelid = %s::regclass",
            [TABLE],
        )
        return dict(cursor.fetchall())


def wal_lsn() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn")
        return int(cursor.fetchone()[0])


def written_columns() -> Counter:
    """The columns each UPDATE of the runs table changes, noted by a trigger while it lives."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT changed, count(*) FROM bench_run_updates GROUP BY changed")
        return Counter(dict(cursor.fetchall()))


TRIGGER = f"""
CREATE TABLE bench_run_updates (changed text);
CREATE FUNCTION bench_note_run_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO bench_run_updates
  SELECT coalesce(string_agg(n.key, ',' ORDER BY n.key), '(none)')
  FROM jsonb_each(to_jsonb(NEW)) AS n JOIN jsonb_each(to_jsonb(OLD)) AS o USING (key)
  WHERE n.value IS DISTINCT FROM o.value;
  RETURN NEW;
END $$;
CREATE TRIGGER bench_note_run_update AFTER UPDATE ON {TABLE}
  FOR EACH ROW EXECUTE FUNCTION bench_note_run_update();
"""
UNTRIGGER = f"""
DROP TRIGGER bench_note_run_update ON {TABLE};
DROP FUNCTION bench_note_run_update();
DROP TABLE bench_run_updates;
"""


def real_runs(alice, csv_server, count: int, tag: str) -> list[int]:
    ids = []
    for index in range(count):
        url = csv_server.serve(f"/{tag}-{index}.csv", csv_body(index))
        imp = make_import(alice, url, name=f"{tag} {index}", dataset=f"{tag}-{index}")
        ids.append(ImportRun.objects.create(scheduled_import=imp, trigger="manual").pk)
    return ids


def synthetic_walk(import_ids: list[int], count: int) -> None:
    """`count` runs inserted and walked as the runner writes them, one statement a step."""
    with connection.cursor() as cursor:
        for index in range(count):
            imp = import_ids[index % len(import_ids)]
            run_id = ImportRun.objects.create(scheduled_import_id=imp, trigger="schedule").pk
            cursor.execute(
                f"UPDATE {TABLE} SET status = 'running', started_at = now(),"
                " attempt_started_at = now(), heartbeat_at = now(), attempts = 1,"
                " worker = 'bench@here', celery_task_id = %s WHERE id = %s",
                [f"bench-{run_id}", run_id],
            )
            # A run longer than the heartbeat's period writes its heartbeat (alone).
            cursor.execute(f"UPDATE {TABLE} SET heartbeat_at = now() WHERE id = %s", [run_id])
            cursor.execute(
                f"UPDATE {TABLE} SET status = 'succeeded', finished_at = now(), phase = '',"
                " rows_committed_at = now(), duration_ms = %s, rows_read = 100,"
                " rows_inserted = 100, bytes_read = 2048, bytes_total = 2048,"
                " file_digest = md5(%s::text) WHERE id = %s",
                [index % 977, run_id, run_id],
            )


def bench_what_the_runs_indexes_cost_each_run(alice, csv_server):
    original = definitions()
    print(f"\nthe runs table's indexes as migrated: {len(original)}")
    for definition in sorted(original.values()):
        print(f"    {definition}")
    # The set proposed by the review: 0042's without the INCLUDE of the history index.
    INDEX_SETS["0042, history without INCLUDE"] = [
        "DROP INDEX run_history_idx",
        f"CREATE INDEX run_history_idx ON {TABLE} (scheduled_import_id, queued_at DESC, id DESC)",
    ]
    # And one with the status and trigger lists' indexes partial: a run's versions of the
    # status most runs end in, and scheduled runs, write none there.
    INDEX_SETS["0042, status and trigger lists partial"] = [
        "DROP INDEX run_status_list_idx",
        "DROP INDEX run_trigger_list_idx",
        f"CREATE INDEX run_status_list_idx ON {TABLE} (status, queued_at DESC, id DESC)"
        " INCLUDE (scheduled_import_id) WHERE status <> 'succeeded'",
        f"CREATE INDEX run_trigger_list_idx ON {TABLE} (trigger, queued_at DESC, id DESC)"
        " INCLUDE (scheduled_import_id) WHERE trigger <> 'schedule'",
    ]
    # And one with the lists' keys ascending (read backwards, newest first, as well): a new run
    # goes to the end of its status's or trigger's range, where a B-tree page splits full,
    # not to its start, where it splits in half.
    INDEX_SETS["0042, status and trigger lists ascending"] = [
        "DROP INDEX run_status_list_idx",
        "DROP INDEX run_trigger_list_idx",
        f"CREATE INDEX run_status_list_idx ON {TABLE} (status, queued_at, id)"
        " INCLUDE (scheduled_import_id)",
        f"CREATE INDEX run_trigger_list_idx ON {TABLE} (trigger, queued_at, id)"
        " INCLUDE (scheduled_import_id)",
    ]
    for name in os.environ.get("BENCH_WRITE_SKIP", "").split(";"):
        INDEX_SETS.pop(name, None)
    imports = [
        make_import(alice, csv_server.serve(f"/s-{i}.csv", csv_body(i)), name=f"s {i}").pk
        for i in range(20)
    ]
    # Warm this process: connection, caches, the engine's imports.
    [warm] = real_runs(alice, csv_server, 1, "warm")
    runner.execute(warm, BenchTask(warm))

    # 1. The columns a real run's UPDATEs write.
    with connection.cursor() as cursor:
        cursor.execute(TRIGGER)
    try:
        probes = real_runs(alice, csv_server, PROBES, "probe")
        for run_id in probes:
            runner.execute(run_id, BenchTask(run_id))
        columns = written_columns()
    finally:
        with connection.cursor() as cursor:
            cursor.execute(UNTRIGGER)
    print(f"\n=== the UPDATEs of {PROBES} real runs by the columns they changed (per run)")
    for changed, count in columns.most_common():
        print(f"    {count / PROBES:5.2f} x {changed}")

    # 2. Per index set: HOT updates, ms and WAL per run.
    print(f"\n=== per index set: {RUNS} runs walked in SQL, then {PROBES} real runs")
    with connection.cursor() as cursor:
        # As a worker's connection commits (tasks: WORKER_SYNCHRONOUS_COMMIT): the figures are
        # the indexes' work, not the disk's flush of each statement.
        cursor.execute("SET synchronous_commit = off")
    try:
        for name, statements in [*INDEX_SETS.items()] * ROUNDS:
            use(statements, original)
            with connection.cursor() as cursor:
                cursor.execute("CHECKPOINT")  # each set's first writes pay full pages alike
            tag = f"real-{len(name)}-{time.monotonic_ns()}"
            ids = real_runs(alice, csv_server, PROBES, tag)
            upd, hot = table_counters()
            wal, sizes = wal_lsn(), index_sizes()
            started = time.perf_counter()
            synthetic_walk(imports, RUNS)
            walk_seconds = time.perf_counter() - started
            walk_wal = wal_lsn() - wal
            grown = {index: size - sizes.get(index, 0) for index, size in index_sizes().items()}
            walk_upd, walk_hot = table_counters()
            wal = wal_lsn()
            started = time.perf_counter()
            for run_id in ids:
                runner.execute(run_id, BenchTask(run_id))
            real_seconds = time.perf_counter() - started
            real_wal = wal_lsn() - wal
            real_upd, real_hot = table_counters()
            report(
                f"indexes {name} ({len(definitions())} on the table)",
                walk_ms_per_run=round(walk_seconds / RUNS * 1000, 3),
                walk_wal_bytes_per_run=round(walk_wal / RUNS),
                walk_updates_hot=f"{walk_hot - hot}/{walk_upd - upd}",
                real_ms_per_run=round(real_seconds / PROBES * 1000, 1),
                real_wal_bytes_per_run=round(real_wal / PROBES),
                real_updates_hot=f"{real_hot - walk_hot}/{real_upd - walk_upd}",
                walk_index_bytes_per_run=round(sum(grown.values()) / RUNS),
            )
            print("    index bytes per walked run: " + ", ".join(
                f"{index} {size / RUNS:.0f}" for index, size in sorted(grown.items()) if size
            ), flush=True)  # fmt: skip
    finally:
        use([], original)
