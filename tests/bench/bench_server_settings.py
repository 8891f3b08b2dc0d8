"""Benchmark: what pinning the server settings importbeat needs costs a new connection, and what
a server whose transactions default to serializable cost before (common/postgres.py).

Run with `make bench` (or this file alone, see the README):

1. 300 new Django connections (connect, the `connection_created` receivers, close) on a server
   left at its defaults: without the pins, then with them (one statement: the isolation level,
   which the server does not report at login). Median and p95 per connection.
2. The same 300 on a server whose DateStyle is 'SQL, DMY' (one statement, with the style).
3. 20 imports of 2,000 rows run three times over by two workers of four, on a server whose
   transactions default to serializable: seconds, and runs that took more than one attempt.
4. `manage.py run_import` of a 100-row file (changed each time) and of a 200,000-row one, on a
   PostgreSQL with JIT (Debian's; a cluster of the bench's own) at its defaults and with every
   JIT threshold at 0: the run's own seconds, as the command prints them. With the pin these
   are alike; without it (the old tree), the thresholds at 0 compiled every statement.

Timings are printed, never asserted.
"""

from __future__ import annotations

import re
import statistics
import subprocess
import sys
import time

import psycopg
import pytest
from django.db import connection

from common import postgres
from schedules.models import ImportRun
from tests.conftest import BASE_DIR
from tests.server_settings_support import (
    a_server_with_jit,
    database_setting,
    twenty_imports_run_three_times,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]

CONNECTIONS = 300


def _connections(monkeypatch, pinned: bool) -> tuple[float, float]:
    if not pinned:
        monkeypatch.setattr(postgres, "pin_session", lambda raw: ("public", "public"))
    times = []
    for _ in range(CONNECTIONS):
        started = time.perf_counter()
        connection.ensure_connection()
        times.append((time.perf_counter() - started) * 1000)
        connection.close()
    monkeypatch.undo()
    return statistics.median(times), statistics.quantiles(times, n=20)[-1]


def bench_a_new_connections_pins(monkeypatch):
    connection.close()
    for label, pinned in (("without pins", False), ("with pins", True)) * 2:
        median, p95 = _connections(monkeypatch, pinned)
        print(f"\nnew connection, defaults, {label}: median {median:.2f} ms, p95 {p95:.2f} ms")
    with database_setting("DateStyle", "SQL, DMY"):
        median, p95 = _connections(monkeypatch, True)
        print(f"new connection, DateStyle 'SQL, DMY': median {median:.2f} ms, p95 {p95:.2f} ms")


def bench_twenty_imports_on_a_serializable_server(alice, bob, csv_server, processes):
    elapsed = twenty_imports_run_three_times(alice, bob, csv_server, processes, within=300)
    again = ImportRun.objects.filter(attempts__gt=1).count()
    print(
        f"\n60 runs on a serializable server: {elapsed:.1f} s, {again} took more than one "
        f"attempt, {processes.log_of('worker').count('could not serialize')} serialization "
        "failures in the workers' logs"
    )


def bench_runs_on_a_server_with_low_jit_thresholds(csv_server, processes):
    def file(rows: int, label: str) -> str:
        return "sku,name,price\n" + "".join(f"K{i},{label} {i},{i}.5\n" for i in range(rows))

    with a_server_with_jit() as server:
        env = processes.env(DATABASE_URL=server.url)

        def manage(*args: str) -> str:
            done = subprocess.run(
                [sys.executable, "manage.py", *args],
                cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=600, check=True,
            )  # fmt: skip
            return done.stdout

        manage("migrate", "--no-input")
        small = csv_server.serve("/small.csv", file(100, "first"))
        big = csv_server.serve("/big.csv", file(200_000, "first"))
        manage(
            "shell", "-c",
            "from django.contrib.auth import get_user_model; from tests.factories import "
            "make_import; alice = get_user_model().objects.create_user('alice'); "
            f"make_import(alice, {small!r}, name='small', dataset='small'); "
            f"make_import(alice, {big!r}, name='big', dataset='big')",
        )  # fmt: skip
        for label, thresholds in (("defaults", "DEFAULT"), ("thresholds at 0", "0")):
            with psycopg.connect(server.url, autocommit=True) as operator:
                for name in ("jit_above_cost", "jit_inline_above_cost", "jit_optimize_above_cost"):
                    operator.execute(f"ALTER DATABASE importbeat SET {name} = {thresholds}")
            for path, rows, import_id in (("/small.csv", 100, "1"), ("/big.csv", 200_000, "2")):
                seconds = []
                for attempt in range(3):
                    csv_server.serve(path, file(rows, f"{label} {attempt}"))
                    said = manage("run_import", import_id, "--no-progress")
                    seconds.append(float(re.search(r"succeeded in ([0-9.]+)s", said).group(1)))
                print(f"\nJIT {label}, {rows:,} rows: " + ", ".join(f"{s:.2f} s" for s in seconds))
