"""Benchmark: what a long-running deployment accumulates, round after round of small runs.

Run with `make bench` (or this file alone, see the README). One Procfile worker (concurrency 2)
runs rounds of manual runs of BENCH_SOAK_IMPORTS imports, each file of a layout of its own
(the worker's per-layout caches see as many layouts as imports), a tenth of them failing and a
fifth of the good ones telling a webhook receiver. After every round it prints:

- the worker's pool processes: their largest resident set (kB) and open descriptors, and the
  TCP connections of the whole worker (its PostgreSQL and Redis connections): a leak grows
  them round after round; Celery recycles no pool process (no worker_max_tasks_per_child).
- Redis (the one db of REDIS_URL, the broker's and the results'): keys by pattern, those with
  no TTL apart, and their bytes (MEMORY USAGE). A pattern with no TTL that grows by round is
  unbounded; one with a TTL is bounded by it (task results: CELERY_RESULT_EXPIRES).
- PostgreSQL: the rows each table gained per run, and what retention bounds them by.

At the end, the rows a day at 10,000 imports run hourly would add (240,000 runs a day), from
the measured rows per run. Only that work was done (every run ended) is asserted.
"""

from __future__ import annotations

import os
import re
import time
from collections import defaultdict

import psutil
import pytest
from django.db import connection

from common import redis_client
from schedules import services
from schedules.models import ImportRun
from tests.bench.figures import report
from tests.conftest import wait_for
from tests.factories import make_import
from tests.webhook_support import Hook

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.processes,
    pytest.mark.timeout(3600),
]

IMPORTS = int(os.environ.get("BENCH_SOAK_IMPORTS", "500"))
ROUNDS = int(os.environ.get("BENCH_SOAK_ROUNDS", "8"))
RUNS_A_DAY = 10_000 * 24
# The worker as deployed (DJANGO_DEBUG=1, the tests' default, keeps every connection's last
# 9,000 statements: growth of its own).
PRODUCTION = {"DJANGO_DEBUG": "0", "DJANGO_SECRET_KEY": "bench-soak-" + "x" * 40}

# What bounds each table that grows with runs (tasks.maintenance.delete_old_runs).
BOUNDS = {
    "schedules_importrun": "RUN_RETENTION_DAYS (failed: FAILED_RUN_RETENTION_DAYS)",
    "schedules_notificationdelivery": "RUN_RETENTION_DAYS (failed: FAILED_RUN_RETENTION_DAYS)",
    "auditlog_logentry": "run events: RUN_RETENTION_DAYS",
    "schedules_record": "the datasets' own rows",
    "schedules_runtally": "imports x statuses",
    "schedules_ownermailbox": "owners",
}


def pattern(key: str) -> str:
    key = re.sub(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "<uuid>", key)
    return re.sub(r"\d+", "<n>", key)


def redis_figures() -> dict[str, tuple[int, int, int]]:
    """Keys by pattern: (keys, keys without a TTL, bytes)."""
    store = redis_client.client()
    found: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for key in store.scan_iter(count=1000):
        figures = found[pattern(key.decode(errors="replace"))]
        figures[0] += 1
        figures[1] += store.ttl(key) == -1
        figures[2] += store.memory_usage(key) or 0
    return {name: tuple(figures) for name, figures in sorted(found.items())}


def table_rows() -> dict[str, int]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind = 'r' AND n.nspname = current_schema() ORDER BY 1"
        )
        names = [name for (name,) in cursor.fetchall()]
        rows = {}
        for name in names:
            cursor.execute(f'SELECT count(*) FROM "{name}"')
            rows[name] = cursor.fetchone()[0]
    return rows


def worker_figures(worker) -> dict[str, int]:
    root = psutil.Process(worker.pid)
    # /bin/sh exec's celery: the Procfile's process is the worker itself.
    children = root.children(recursive=True)
    return {
        "pool_processes": len(children),
        "max_rss_kb": max(child.memory_info().rss for child in children) // 1024,
        "max_fds": max(child.num_fds() for child in children),
        "main_fds": root.num_fds(),
        "tcp_connections": sum(len(proc.net_connections(kind="tcp")) for proc in [root, *children]),
    }


def csv_body(index: int, round_: int) -> str:
    return f"sku,field_{index}\nS{index},{round_}\nT{index},{round_ * 2}\n"


def bench_what_rounds_of_small_runs_leave_behind(alice, bob, csv_server, processes):
    hook = Hook()
    try:
        current = {"round": 0}
        imports = []
        for index in range(IMPORTS):
            path = f"/soak-{index}.csv"
            if index % 10 == 9:
                url = csv_server.serve(path, "gone", status=404)
            else:
                url = csv_server.base_url + path

                def body(index=index):
                    from tests.conftest import Route

                    return Route(csv_body(index, current["round"]).encode())

                csv_server.routes[path] = body
            tells = index % 5 == 0
            imports.append(make_import(
                alice if index % 2 else bob, url, name=f"soak {index}", dataset=f"soak-{index}",
                max_retries=0, notify_on=["succeeded", "failed"] if tells else [],
                notify_channels=["webhook"], callback_url=hook.url if tells else "",
            ))  # fmt: skip
        # As deployed: with DEBUG on, Django keeps each connection's last 9,000 statements.
        worker = processes.start("worker", WORKER_NAME="soak", **PRODUCTION)
        rows_before = table_rows()
        first_redis = None
        started = time.perf_counter()
        for round_ in range(1, ROUNDS + 1):
            current["round"] = round_
            runs = [services.enqueue_run(imp, trigger="api", user=alice).pk for imp in imports]
            wait_for(
                lambda runs=runs: (
                    ImportRun.objects.filter(pk__in=runs, finished_at__isnull=False).count()
                    == len(runs)
                ),
                600,
                what="the round's runs to end\n" + processes.logs(),
            )
            redis_now = redis_figures()
            first_redis = first_redis or redis_now
            report(f"round {round_}", runs=round_ * IMPORTS,
                   seconds=round(time.perf_counter() - started), **worker_figures(worker),
                   redis_keys=sum(f[0] for f in redis_now.values()),
                   redis_keys_without_ttl=sum(f[1] for f in redis_now.values()),
                   redis_kb=sum(f[2] for f in redis_now.values()) // 1024)  # fmt: skip
        runs = ROUNDS * IMPORTS
        for name, (keys, untimed, size) in redis_now.items():
            first = first_redis.get(name, (0, 0, 0))
            report(f"redis {name}", keys=keys, without_ttl=untimed, bytes=size,
                   keys_after_round_1=first[0])  # fmt: skip
        rows_after = table_rows()
        for name, rows in rows_after.items():
            gained = rows - rows_before.get(name, 0)
            if gained:
                per_run = gained / runs
                report(f"table {name}", rows_per_run=round(per_run, 3),
                       rows_a_day_at_10000_hourly=round(per_run * RUNS_A_DAY),
                       bounded_by=BOUNDS.get(name, "?").replace(" ", "_"))  # fmt: skip
        assert ImportRun.objects.filter(finished_at__isnull=False).count() == runs
    finally:
        hook.close()
