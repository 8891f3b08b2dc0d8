"""Benchmark: many small runs through one worker, against a no-op task on the same worker.

Run with `make bench` (or this file alone, see the README). Everything happens in one session,
on one Procfile worker (concurrency 2) and one broker:

1. 500 imports of distinct 100-row CSVs (a local HTTP server serves them).
2. A no-op Celery task (`importbeat.noop`, default task settings) sent 500 times: tasks/s from
   the first send to the last result. Measured before and after the runs; the reference is
   their mean, so a machine that got busier in between does not flatter either side.
3. 500 manual runs (`services.enqueue_run`, its rate printed), queued while the worker's
   consumer is paused, then consumed: runs/s from resuming to the last run finished. With the
   PostgreSQL side of those runs (pg_stat_database deltas: transactions, time executing
   statements, new connections per run) and the worker's CPU per run.
4. The manual trigger's answer: `POST /api/v1/imports/{id}/run` on a real gunicorn (the
   Procfile's web line) from 10 concurrent clients, p50/p95, beside `GET /api/v1/me` on the
   same web and clients (the floor of an authenticated request there).
5. In this process, one small run's statements by kind (Django's execute_wrapper): what a run
   costs the database, statement by statement.

Targets (issue 15): runs/s at least 0.5x the no-op's; the trigger's answer under 20 ms p50.
Timings are printed, never asserted.
"""

from __future__ import annotations

import os
import statistics
import threading
import time
import types
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import psutil
import psycopg
import psycopg.sql
import pytest
from django.db import connection, connections
from knox.models import AuthToken

from project import worker_connections
from project.devservices import free_port
from schedules import services
from schedules.models import ImportRun
from tasks import engine, runner
from tests.bench import http_clients
from tests.bench.figures import percentile, report
from tests.bench.small_run_floor import floor_ms_per_run
from tests.conftest import answers, wait_for
from tests.factories import make_import

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.processes,
    pytest.mark.timeout(1800),
]

RUNS = int(os.environ.get("BENCH_SMALL_RUNS", "500"))
ROWS = 100
CLIENTS = 10
TRIGGERS_PER_CLIENT = min(20, RUNS // CLIENTS)
QUEUE = "celery"
# The worker's pool processes (the Procfile's default): the runs' and the no-op's slots.
WORKER_SLOTS = 2
# Runs executed in the bench's own process for the statement breakdown.
PROBES = 20
# Runs executed in the bench's process with asynchronous commits and without.
COMMIT_MODE_RUNS = 80
# Runs done by the floor's work alone (tests/bench/small_run_floor.py).
FLOOR_RUNS = 40


def csv_body(index: int) -> str:
    lines = ["sku,name,price,stock"]
    lines += [f"S{index}-{row},item {row} of {index},{row}.50,{row % 7}" for row in range(ROWS)]
    return "\n".join(lines) + "\n"


# PostgreSQL publishes a backend's statistics a second after its previous publication at most,
# when the backend goes on: this process's own, at the statement that reads them. Another
# backend that goes idle within that second keeps the rest for PGSTAT_IDLE_INTERVAL, 10 s
# (PostgreSQL 15 to 17, src/backend/utils/activity/pgstat.c): after 1.2 s, the worker's idle
# connections had not published a short drain's last second (20 runs counted 0.1 transactions
# and 0.0 updates of the run row each; 8.8 and 2.0 once waited for).
OWN_STATS_SECONDS = 1.2
OTHERS_STATS_SECONDS = 11


def db_stats(wait: float = OWN_STATS_SECONDS) -> dict[str, float]:
    """This database's counters, `wait` seconds on: every statement until now counted in them
    when it ran in this process, or, with OTHERS_STATS_SECONDS, in another one."""
    time.sleep(wait)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(
            "SELECT xact_commit + xact_rollback, active_time, sessions FROM pg_stat_database "
            "WHERE datname = current_database()"
        )
        xacts, active_ms, sessions = cursor.fetchone()
        cursor.execute(
            "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables "
            "WHERE relname = 'schedules_importrun'"
        )
        updates, hot = cursor.fetchone()
    return {"xacts": xacts, "active_ms": active_ms, "sessions": sessions, "run_updates": updates,
            "run_hot_updates": hot}  # fmt: skip


def tree_cpu(pid: int) -> float:
    """CPU seconds of a process and its children (the worker's pool)."""
    total = 0.0
    root = psutil.Process(pid)
    for proc in [root, *root.children(recursive=True)]:
        try:
            times = proc.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return total


def noop_rate(app, count: int) -> float:
    """celery.ping sent `count` times; tasks/s from the first send to the last result."""
    started = time.perf_counter()
    results = [app.send_task("importbeat.noop") for _ in range(count)]
    for result in results:
        result.get(timeout=120)
    return count / (time.perf_counter() - started)


def finished_runs(run_ids: list[int]) -> int:
    return ImportRun.objects.filter(pk__in=run_ids, status__in=ImportRun.FINAL_STATUSES).count()


class BenchTask:
    """What the runner asks of its Celery task, for runs executed in this process."""

    def __init__(self, run_id: int) -> None:
        self.request = types.SimpleNamespace(hostname="bench@here", id=f"bench-{run_id}")

    def update_state(self, **_kwargs: object) -> None:
        pass


def run_breakdown(run_ids: list[int]) -> dict[str, object]:
    """Runs executed here one after the other (the worker's path: lease, owner's cap, claim,
    engine, outcome), every statement they send counted by kind and timed, the bookkeeping's
    through Django and the engine's own on its psycopg cursor (its COPY is not counted)."""
    kinds: Counter = Counter()
    times: Counter = Counter()
    execute, import_run = psycopg.Cursor.execute, engine.import_run
    engine_seconds = [0.0]

    def counted(cursor, query, *args, **kwargs):
        text = query.as_string(cursor) if isinstance(query, psycopg.sql.Composable) else query
        kind = " ".join(str(text).split()[:3])[:60]
        started = time.perf_counter()
        try:
            return execute(cursor, query, *args, **kwargs)
        finally:
            kinds[kind] += 1
            times[kind] += time.perf_counter() - started

    def timed_import_run(*args, **kwargs):
        started = time.perf_counter()
        try:
            return import_run(*args, **kwargs)
        finally:
            engine_seconds[0] += time.perf_counter() - started

    before = db_stats()
    psycopg.Cursor.execute, engine.import_run = counted, timed_import_run
    started = time.perf_counter()
    try:
        for run_id in run_ids:
            runner.execute(run_id, BenchTask(run_id))
    finally:
        psycopg.Cursor.execute, engine.import_run = execute, import_run
    total = time.perf_counter() - started
    after = db_stats()
    runs = len(run_ids)
    return {
        "runs": runs,
        "ms_per_run": round(total / runs * 1000, 1),
        "engine_ms_per_run": round(engine_seconds[0] / runs * 1000, 1),
        "statements_per_run": round(sum(kinds.values()) / runs, 1),
        # Three transactions of db_stats itself (the snapshot clear and two reads).
        "transactions_per_run": round((after["xacts"] - before["xacts"] - 3) / runs, 1),
        "kinds": kinds,
        "times": times,
    }


def commit_modes(run_ids: list[int], settings) -> dict[str, float]:
    """Runs executed here with the worker's asynchronous commits and without, interleaved in
    rounds so that the machine's load weighs on both alike: median ms per run of each."""
    timings: dict[str, list[float]] = {"off": [], "on": []}
    rounds = 4
    per_round = len(run_ids) // (2 * rounds)
    pending = iter(run_ids)
    try:
        for _ in range(rounds):
            for mode in timings:
                settings.WORKER_SYNCHRONOUS_COMMIT = mode
                connection.close()
                vars(connections["default"]).pop("commits_asynchronously", None)
                connection.ensure_connection()
                worker_connections._session_settings(connection)
                for _ in range(per_round):
                    run_id = next(pending)
                    started = time.perf_counter()
                    runner.execute(run_id, BenchTask(run_id))
                    timings[mode].append((time.perf_counter() - started) * 1000)
    finally:
        connection.close()
        vars(connections["default"]).pop("commits_asynchronously", None)
    return {mode: round(statistics.median(values), 1) for mode, values in timings.items()}


def bench_small_runs_against_a_noop_task(alice, csv_server, processes, settings):
    from project.celery import app

    # Given 500 imports of distinct 100-row files
    started = time.perf_counter()
    imports = [
        make_import(
            alice,
            csv_server.serve(f"/small-{i}.csv", csv_body(i)),
            name=f"small {i}",
            dataset=f"small-{i}",
        )
        for i in range(RUNS)
    ]
    report("setup", imports=len(imports), seconds=round(time.perf_counter() - started, 1))

    # In this process first: runs one after the other, their statements by kind. Its
    # connection commits synchronously, as `run_import`'s does (a worker's does not).
    probes = []
    for index in range(PROBES + 1):
        imp = make_import(alice, csv_server.serve(f"/probe-{index}.csv", csv_body(RUNS + index)),
                          name=f"probe {index}", dataset=f"probe-{index}")  # fmt: skip
        probes.append(ImportRun.objects.create(scheduled_import=imp, trigger="manual").pk)
    runner.execute(probes[0], BenchTask(probes[0]))  # warms this process's connection, caches
    breakdown = run_breakdown(probes[1:])
    kinds, times = breakdown.pop("kinds"), breakdown.pop("times")
    report("runs one after the other in this process", **breakdown)
    for kind, count in kinds.most_common():
        print(f"    {count / PROBES:5.1f} x {kind:60s} {times[kind] / PROBES * 1000:6.2f} ms",
              flush=True)  # fmt: skip

    # The worker's asynchronous commits against synchronous ones, in this process.
    modes = []
    for index in range(COMMIT_MODE_RUNS):
        imp = make_import(alice, csv_server.serve(f"/mode-{index}.csv", csv_body(2 * RUNS + index)),
                          name=f"mode {index}", dataset=f"mode-{index}")  # fmt: skip
        modes.append(ImportRun.objects.create(scheduled_import=imp, trigger="manual").pk)
    medians = commit_modes(modes, settings)
    report("runs in this process by how the connection commits (median ms per run)",
           asynchronous=medians["off"], synchronous=medians["on"])  # fmt: skip

    # The floor: what any design must do for such a file (small_run_floor), on the same
    # connection, committing synchronously as the synchronous runs above.
    floor_runs = []
    for index in range(FLOOR_RUNS):
        url = csv_server.serve(f"/floor-{index}.csv", csv_body(3 * RUNS + index))
        imp = make_import(alice, url, name=f"floor {index}", dataset=f"floor-{index}")
        floor_runs.append(ImportRun.objects.create(scheduled_import=imp, trigger="manual"))
    floor_ms = floor_ms_per_run(floor_runs)
    report("the floor of a small run in this process (median ms per run)", floor=round(floor_ms, 1),
           engine=medians["on"], engine_over_floor=f"{medians['on'] / floor_ms:.1f}x")  # fmt: skip

    # And one worker (concurrency 2) of the Procfile. BENCH_WORKER_PGOPTIONS passes libpq
    # options to its connections, to try a server setting (`-c jit=off`); the environment
    # reaches it too (WORKER_SYNCHRONOUS_COMMIT=on: its bookkeeping waits for the disk again).
    # It runs with DEBUG off, as in production: with it on, Django's debug cursor formats and
    # keeps every statement, some 5% of a run's CPU in a pool process (issue 15, py-spy);
    # BENCH_WORKER_DEBUG=1 measures it as the first rounds did.
    worker = processes.start(
        "worker",
        WORKER_CONCURRENCY=str(WORKER_SLOTS),
        PGOPTIONS=os.environ.get("BENCH_WORKER_PGOPTIONS", ""),
        DJANGO_DEBUG=os.environ.get("BENCH_WORKER_DEBUG", "0"),
        DJANGO_SECRET_KEY="bench-small-runs-not-a-secret",
    )
    wait_for(lambda: app.control.ping(timeout=0.5), 60, what="the worker\n" + processes.logs())
    noop_rate(app, 20)  # warm the pool's processes

    # The no-op reference
    cpu_before = tree_cpu(worker.pid)
    noop_before = noop_rate(app, RUNS)
    noop_cpu = tree_cpu(worker.pid) - cpu_before
    report("no-op task (importbeat.noop), before the runs", tasks_per_s=round(noop_before, 1),
           worker_cpu_ms_per_task=round(noop_cpu / RUNS * 1000, 1))  # fmt: skip

    # The runs, queued while the worker does not consume
    app.control.cancel_consumer(QUEUE, reply=True)
    started = time.perf_counter()
    run_ids = [services.enqueue_run(imp, trigger="api", user=alice).pk for imp in imports]
    enqueue_rate = RUNS / (time.perf_counter() - started)
    report("enqueue_run", runs_per_s=round(enqueue_rate, 1))

    before, cpu_before = db_stats(OTHERS_STATS_SECONDS), tree_cpu(worker.pid)
    polls = 0
    started = time.perf_counter()
    app.control.add_consumer(QUEUE, reply=True)
    while True:
        polls += 1
        if finished_runs(run_ids) == RUNS:
            break
        assert time.perf_counter() - started < 600, processes.logs()
        time.sleep(0.2)
    wall = time.perf_counter() - started
    cpu = tree_cpu(worker.pid) - cpu_before
    after = db_stats(OTHERS_STATS_SECONDS)
    runs_rate = RUNS / wall
    outcomes = Counter(ImportRun.objects.filter(pk__in=run_ids).values_list("status", flat=True))
    # This process's own statements in the window: the polls, one transaction each.
    xacts = after["xacts"] - before["xacts"] - polls - 3
    report(
        f"{RUNS} small runs",
        runs_per_s=round(runs_rate, 1),
        seconds=round(wall, 1),
        outcomes=dict(outcomes),
        worker_ms_per_run=round(wall * WORKER_SLOTS / RUNS * 1000, 1),
        worker_cpu_ms_per_run=round(cpu / RUNS * 1000, 1),
        db_transactions_per_run=round(xacts / RUNS, 1),
        db_active_ms_per_run=round((after["active_ms"] - before["active_ms"]) / RUNS, 1),
        db_connections_opened=int(after["sessions"] - before["sessions"]),
        run_row_updates_per_run=round((after["run_updates"] - before["run_updates"]) / RUNS, 1),
        of_them_hot=round((after["run_hot_updates"] - before["run_hot_updates"]) / RUNS, 1),
    )

    noop_after = noop_rate(app, RUNS)
    noop = (noop_before + noop_after) / 2
    report("no-op task (importbeat.noop), after the runs", tasks_per_s=round(noop_after, 1))
    report(
        "small runs against the no-op task",
        ratio=f"{runs_rate / noop:.2f}x",
        target="0.5x",
        met=runs_rate / noop >= 0.5,
    )
    # A run through the worker costs at least a no-op task (per pool process) plus the floor.
    noop_ms = WORKER_SLOTS / noop * 1000
    report("at best, a no-op task plus the floor", ms_per_run=round(noop_ms + floor_ms, 1),
           ratio=f"{noop_ms / (noop_ms + floor_ms):.2f}x")  # fmt: skip

    # The manual trigger's answer, on a real web process; the worker does not consume meanwhile
    # (the queued runs wait), so the figures are the web's and its database's alone.
    app.control.cancel_consumer(QUEUE, reply=True)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    processes.start("web", PORT=str(port), API_MANUAL_RUN_RATE="1000000/minute")
    wait_for(lambda: answers(base), 60, what="web\n" + processes.logs())
    _, token = AuthToken.objects.create(user=alice, expiry=None)
    headers = {"Authorization": f"Token {token}"}
    lock = threading.Lock()

    def client(method: str, path_for, targets) -> list[float]:
        connection = http_clients.Client(base, headers, {})
        timings, codes = [], Counter()
        for _ in range(TRIGGERS_PER_CLIENT):
            with lock:
                pk = next(targets)
            status, _, seconds = connection.request(method, path_for(pk))
            timings.append(seconds)
            codes[status] += 1
        assert set(codes) <= {200, 202}, codes
        return timings

    def measure(method: str, path_for) -> list[float]:
        targets = iter([imp.pk for imp in imports])
        with ThreadPoolExecutor(CLIENTS) as pool:
            futures = [pool.submit(client, method, path_for, targets) for _ in range(CLIENTS)]
            return [t * 1000 for future in futures for t in future.result()]

    measure("GET", lambda pk: "/api/v1/me")  # warm both web workers and their connections
    floor = measure("GET", lambda pk: "/api/v1/me")
    triggers = measure("POST", lambda pk: f"/api/v1/imports/{pk}/run")
    for name, timings in (("GET /api/v1/me (floor)", floor), ("POST /imports/{id}/run", triggers)):
        report(
            f"{name}, {CLIENTS} concurrent clients",
            requests=len(timings),
            p50_ms=round(percentile(timings, 0.5), 1),
            p95_ms=round(percentile(timings, 0.95), 1),
            mean_ms=round(statistics.mean(timings), 1),
        )
    report("manual trigger's answer", p50_ms=round(percentile(triggers, 0.5), 1),
           target="20 ms p50", met=percentile(triggers, 0.5) < 20)  # fmt: skip
