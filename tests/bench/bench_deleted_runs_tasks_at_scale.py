"""Benchmark: the statement every run deletion adds to find the deleted waiting runs' tasks
(services.WAITING_TASKS, told to Flower as revoked: schedules/revoked_tasks.py), at a year of
1,000,000 runs, beside the deletion's own cost.

Run with `make bench`, or alone:
  .venv/bin/python -m project.devservices run --test -- .venv/bin/python -m pytest -s \
      -p no:cacheprovider -o python_files='bench_*.py' -o python_functions='bench_*' \
      tests/bench/bench_deleted_runs_tasks_at_scale.py
It builds the reads bench's history (tests/bench/bench_reads.py: `BENCH_READS_IMPORTS` imports
of five users, 10,000, and `BENCH_READS_RUNS` finished runs over a year, 1,000,000, with 20 runs
in progress), then:

- one import with a long history: every tenth run of the year moved to it
  (`BENCH_DELETED_TASKS_EVERY`, 10: 100,000 runs), and three waiting runs of its own (one
  retrying, two queued), each with a task and a worker;
- a backlog of `BENCH_DELETED_TASKS_BACKLOG` (2,000) queued runs of the other imports, as an
  outage leaves them: what the statement's partial indexes hold beside the runs deleted.

Measured, each in a transaction rolled back (the same rows every time), in this process:

1. a retention batch: 5,000 finished runs older than 30 days, selected by id as
   maintenance._delete_in_batches selects them, and deleted as it deletes them (`ended_only`:
   the statement is not run, 1fb3adc), beside the deletion that runs it (`looking_ms`);
2. deleting the import with a long history (services.delete_import's `imp.runs.all()`);
3. deleting a user's runs (schedules.signals: alice's, a fifth of the year).

For each: EXPLAIN (ANALYZE, BUFFERS) of the statement, and of the reference as it was before
(the waiting runs among every run selected: a join of all the table's waiting runs with all the
runs deleted); the time of each alone (median of `BENCH_DELETED_TASKS_ROUNDS`, 5); then
services.delete_runs whole, every statement timed, the statement's share of it. Timings are
printed, never asserted (the two forms finding the same tasks is).
"""

from __future__ import annotations

import os
import statistics
import time
import uuid
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from common import database_clock
from schedules import services
from schedules.models import ImportRun
from tests.bench import bench_reads as history
from tests.bench.figures import report

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(3600)]

EVERY = int(os.environ.get("BENCH_DELETED_TASKS_EVERY", "10"))
BACKLOG = int(os.environ.get("BENCH_DELETED_TASKS_BACKLOG", "2000"))
ROUNDS = int(os.environ.get("BENCH_DELETED_TASKS_ROUNDS", "5"))
RUNS_TABLE = ImportRun._meta.db_table


def a_long_history(import_id: int) -> None:
    """Every EVERY-th run of the year moved to the import (their ticks are seconds apart: no
    two of them share one), and three waiting runs of its own."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {RUNS_TABLE} SET scheduled_import_id = %s WHERE id %% %s = 0 AND status"
            " NOT IN ('queued', 'running', 'retrying')",
            [import_id, EVERY],
        )
    now = database_clock.now()
    ImportRun.objects.bulk_create(
        [
            ImportRun(
                scheduled_import_id=import_id, trigger="manual", status=status,
                queued_at=now - timedelta(minutes=n), attempts=1 if status == "retrying" else 0,
                started_at=now - timedelta(minutes=n) if status == "retrying" else None,
                celery_task_id=str(uuid.uuid4()), worker="worker@bench",
            )
            for n, status in enumerate(("retrying", "queued", "queued"))
        ]
    )  # fmt: skip


def a_backlog(import_ids: list[int]) -> None:
    """BACKLOG queued runs of the other imports, round-robin, as beat left them in an outage."""
    now = database_clock.now()
    others = import_ids[1:]
    ImportRun.objects.bulk_create(
        [
            ImportRun(
                scheduled_import_id=others[n % len(others)], trigger="manual", status="queued",
                queued_at=now - timedelta(seconds=n), celery_task_id=str(uuid.uuid4()),
            )
            for n in range(BACKLOG)
        ],
        batch_size=5000,
    )  # fmt: skip


def statement_of(runs) -> tuple[str, list]:
    """WAITING_TASKS as services.delete_runs runs it for `runs` (services.waiting_tasks)."""
    return services.waiting_tasks(runs)


def as_it_was(runs) -> tuple[str, list]:
    """The reference (not the product's): WAITING_TASKS over every run selected, as the
    deletion read it before (the waiting runs among all those selected, a join of the two)."""
    selected, params = runs.order_by().values("pk").query.sql_with_params()
    sql = services.WAITING_TASKS.replace(services.SELECTED_RUNS, selected)
    return sql, [services.PARKED_BY, *params]


def explain(sql: str, params: list) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", params)
        # Not 5,000 ids: each line cut.
        return "\n".join("      " + row[0][:160] for row in cursor.fetchall())


def timed(sql: str, params: list) -> tuple[float, int]:
    """The statement's median wall ms over ROUNDS, and how many tasks it found."""
    walls, found = [], 0
    for _ in range(ROUNDS):
        with connection.cursor() as cursor:
            started = time.perf_counter()
            cursor.execute(sql, params)
            found = len(cursor.fetchall())
            walls.append((time.perf_counter() - started) * 1000)
    return statistics.median(walls), found


def deletion(runs, ended_only: bool = False) -> tuple[float, float, int, int]:
    """services.delete_runs(runs), rolled back: its wall ms, the ms of its WAITING_TASKS
    statement within it, its statements, and the runs it deleted. `ended_only` as retention
    passes it (maintenance._delete_in_batches: no waiting runs' tasks looked for)."""
    with CaptureQueriesContext(connection) as ctx, transaction.atomic():
        started = time.perf_counter()
        deleted = services.delete_runs(runs, ended_only=ended_only)
        wall = (time.perf_counter() - started) * 1000
        transaction.set_rollback(True)
    waiting = sum(
        float(q["time"]) * 1000 for q in ctx.captured_queries if "error_details ->>" in q["sql"]
    )
    statements = [
        q
        for q in ctx.captured_queries
        if not q["sql"].startswith(("SAVEPOINT", "RELEASE", "ROLLBACK"))
    ]
    return wall, waiting, len(statements), deleted


def measure(name: str, runs, ended_only: bool = False) -> None:
    """The statement alone, its reference, and the deletion whole. `ended_only`: the deletion as
    retention makes it since 1fb3adc (the statement left out), beside the deletion that looks
    for the tasks (`looking_ms`, what a retention batch cost before): until this bench passed
    it, the retention batch's figures were those of a deletion retention no longer makes."""
    before_sql, before_params = as_it_was(runs)
    print(f"\n  reference, as it was, {name}:\n" + explain(before_sql, before_params))
    before_ms, before_found = timed(before_sql, before_params)
    sql, params = statement_of(runs)
    print(f"\n  plan of the deleted waiting runs' tasks, {name}:\n" + explain(sql, params))
    alone_ms, found = timed(sql, params)
    assert found == before_found  # the same tasks, read another way
    whole = [deletion(runs, ended_only) for _ in range(max(ROUNDS // 2, 1))]
    wall = statistics.median(w[0] for w in whole)
    waiting = statistics.median(w[1] for w in whole)
    looking = {}
    if ended_only:
        looking_ms = statistics.median(deletion(runs)[0] for _ in range(max(ROUNDS // 2, 1)))
        looking = {"looking_ms": f"{looking_ms:.0f}"}
    report(
        f"deleted waiting runs' tasks, {name}",
        statement_ms=f"{alone_ms:.2f}",
        as_it_was_ms=f"{before_ms:.2f}",
        tasks_found=found,
        deletion_ms=f"{wall:.0f}",
        **looking,
        statement_in_deletion_ms=f"{waiting:.2f}",
        share=f"{waiting / wall:.2%}" if wall else "-",
        deletion_statements=whole[-1][2],
        runs_deleted=whole[-1][3],
    )


def bench_deleted_runs_tasks_at_a_year_of_history(django_user_model) -> None:
    started = time.monotonic()
    import_ids, _client = history.a_year_for_ops()
    long_one = import_ids[0]
    a_long_history(long_one)
    a_backlog(import_ids)
    history.vacuum()
    report("built", runs=ImportRun.objects.count(),
           long_history=ImportRun.objects.filter(scheduled_import_id=long_one).count(),
           waiting=ImportRun.objects.filter(status__in=("queued", "retrying")).count(),
           seconds=round(time.monotonic() - started))  # fmt: skip

    month_ago = database_clock.now() - timedelta(days=30)
    batch = list(
        ImportRun.objects.filter(queued_at__lt=month_ago)
        .exclude(status__in=ImportRun.ACTIVE_STATUSES)
        .order_by()
        .values_list("pk", flat=True)[:5000]
    )
    measure("a retention batch of 5,000", ImportRun.objects.filter(pk__in=batch), ended_only=True)
    measure(
        "the import with a long history",
        ImportRun.objects.get(
            scheduled_import_id=long_one, status="retrying"
        ).scheduled_import.runs.all(),
    )
    alice = django_user_model.objects.get(username="alice")
    measure("a user's runs", ImportRun.objects.filter(scheduled_import__owner=alice))
    print(f"(bench total {time.monotonic() - started:.0f}s)")
