"""Benchmark: the owners' lines of 10,000 owners, each with a few parked runs.

`BENCH_LINES_OWNERS` owners (10,000) with `BENCH_LINES_PARKED` parked runs each (3), built as
bench_owners_lines_sweep builds them (beat's lines, common.owner_lines), beside a history of
`BENCH_LINES_HISTORY` finished runs (1,000,000, tests/bench/bench_reads's year) in the same
run table. MAX_RUNNING_PER_OWNER is 2. Each case times the real sweep (`maintenance.sweep_runs`,
the task `importbeat.sweep_runs` runs it, soft time limit 120 s) and, inside it, its look at
the lines (`fairness.look_after_lines`), with the statements and Redis round trips of a pass:

1. every owner at the cap (two runs running each): the lines kept whole;
2. every owner below it (their running runs ended, as after the workers died and the sweep
   ended their runs): the first pass sends two runs of each owner (real messages, on the
   test broker), then the next passes while those messages still wait in the broker;
3. Redis lost the lines (restarted empty: its keys gone), the owners at the cap again: the pass
   that puts the parked runs back from the database, with the plan of its chunk's selection.

Timings are printed, never asserted.
"""

from __future__ import annotations

import os
import re
import time
from collections import Counter, defaultdict, deque
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from common import database_clock, owner_lines
from common.redis_client import client
from schedules.models import ImportRun
from tasks import fairness, maintenance
from tests.bench import bench_reads
from tests.bench.bench_owners_lines_sweep import parked_runs
from tests.bench.figures import report

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(3600)]

OWNERS = int(os.environ.get("BENCH_LINES_OWNERS", "10000"))
PARKED = int(os.environ.get("BENCH_LINES_PARKED", "3"))
HISTORY = int(os.environ.get("BENCH_LINES_HISTORY", "1000000"))
QUEUE = "celery"


class RedisCommands:
    """Counts the commands Redis processed while it is entered (its INFO, whoever sent them:
    nobody else uses the test's Redis meanwhile); a pipeline counts each of its commands."""

    def __enter__(self) -> RedisCommands:
        self.count = 0
        self.before = client().info("stats")["total_commands_processed"]
        return self

    def __exit__(self, *exc) -> None:
        # (the INFO of __enter__ counted once the next one is answered)
        self.count = client().info("stats")["total_commands_processed"] - self.before - 1


def shape(sql: str) -> str:
    verb = sql.split(None, 1)[0]
    table = re.search(r'(?:FROM|UPDATE|INTO)\s+"?(\w+)"?', sql)
    return f"{verb} {table[1]}" if table else verb


def timed(what: str, call) -> object:
    """Run `call` once: its time, statements and Redis round trips printed; its result."""
    # Django keeps the last 9,000 statements only: a longer pass would read as none.
    connection.queries_log = deque(maxlen=1_000_000)
    with CaptureQueriesContext(connection) as queries, RedisCommands() as commands:
        started = time.monotonic()
        result = call()
        took = time.monotonic() - started
    seconds: dict[str, float] = defaultdict(float)
    for query in queries.captured_queries:
        seconds[shape(query["sql"])] += float(query["time"])
    shapes = Counter(shape(query["sql"]) for query in queries.captured_queries)
    report(what, seconds=round(took, 2), statements=len(queries),
           statements_s=round(sum(seconds.values()), 2), redis_commands=commands.count,
           result=str(result).replace(" ", ""))  # fmt: skip
    for name, count in shapes.most_common(6):
        print(f"    {name:40s} x{count:6d}  {seconds[name]:6.2f} s")
    return result, queries


def sweep_and_look(case: str, passes: int = 2) -> None:
    for n in range(1, passes + 1):
        timed(f"{case}: look_after_lines, pass {n}", fairness.look_after_lines)
    timed(f"{case}: the whole sweep (sweep_runs)", maintenance.sweep_runs)


def parked_in_lines() -> int:
    store = client()
    return sum(
        store.zcard(owner_lines.line_key(owner.decode()))
        for owner in store.smembers(owner_lines.LINES)
    )


def runs_alive(ids: list[int]) -> None:
    """The running runs' heartbeats ahead, as their live workers keep them: the sweep would
    take them for lost."""
    ImportRun.objects.filter(pk__in=ids).update(
        status="running", heartbeat_at=database_clock.now() + timedelta(hours=1)
    )


def broker_length() -> int:
    return client().llen(QUEUE)


def forget_lines() -> int:
    """What a Redis restarted empty leaves of the lines: nothing. The keys deleted."""
    store = client()
    keys = [*store.scan_iter("importbeat:owner:*", count=10_000), owner_lines.LINES]
    keys.append(owner_lines.KEPT)
    for start in range(0, len(keys), 10_000):
        store.delete(*keys[start : start + 10_000])
    return len(keys)


def bench_owners_lines_of_ten_thousand_owners(settings):
    settings.MAX_RUNNING_PER_OWNER = 2
    started = time.monotonic()
    ids = parked_runs(OWNERS, PARKED)
    if HISTORY:
        bench_reads.add_runs(1, HISTORY, total=HISTORY)
    owner_lines.note_whole()  # the lines whole, as a Redis that kept them
    report("built", owners=OWNERS, parked=len(ids), runs=ImportRun.objects.count(),
           owners_with_a_line=client().scard(owner_lines.LINES), in_lines=parked_in_lines(),
           seconds=round(time.monotonic() - started))  # fmt: skip
    running = list(ImportRun.objects.filter(status="running").values_list("pk", flat=True))
    runs_alive(running)
    try:
        # 1. Every owner at the cap.
        sweep_and_look("1. at the cap")

        # 2. Every owner below it: their running runs over.
        ImportRun.objects.filter(pk__in=running).update(status="succeeded")
        before = broker_length()
        timed("2. below the cap: look_after_lines, pass 1", fairness.look_after_lines)
        report("2. sent", messages=broker_length() - before,
               still_parked=parked_in_lines())  # fmt: skip
        sweep_and_look("2. the sent runs' messages still in the broker")

        # 3. Redis lost the lines; the owners at the cap again.
        runs_alive(running)
        client().delete(QUEUE)
        keys = forget_lines()
        _, queries = timed(f"3. lines lost ({keys} keys gone): look_after_lines",
                           fairness.look_after_lines)  # fmt: skip
        report("3. put back", owners_with_a_line=client().scard(owner_lines.LINES),
               parked=parked_in_lines())  # fmt: skip
        chunk = next(q["sql"] for q in queries.captured_queries if "LIKE" in q["sql"])
        with connection.cursor() as cursor:
            cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS) {chunk}")
            print("    plan of the first chunk's selection:")
            print("\n".join("      " + row[0] for row in cursor.fetchall()))
        sweep_and_look("3. after the rebuild", passes=1)
    finally:
        forget_lines()
        client().delete(QUEUE)
