"""Benchmark: reads at a year of history (issue 15, target 2), and creating imports at speed.

Run with `make bench` (or only this file, see README "Benchmark: reads at a year of history").
It builds its own history in the test database, so nothing is cached between runs:

- 10,000 imports of five users (one staff), over 40 schedules in four time zones, and 20 runs
  in progress; then each endpoint is measured on this EMPTY history;
- then the newest 10,000 runs of a year (the last days: a full page in every list), and each
  endpoint again (the "small" history);
- then the rest, up to 1,000,000 finished runs spread over the last 365 days (`INSERT … SELECT
  generate_series`, statuses as a busy deployment has them: mostly succeeded, some failed,
  partial, skipped, timed out); after each step the imports' counters and last results are
  brought in line and the tables `VACUUM ANALYZE`d (what autovacuum does on its own over a
  year); and each endpoint again.

Each endpoint is served by the Procfile's `web` line (gunicorn, its default two workers, without
DEBUG) and loaded by 10 concurrent clients (threads, each with its own keep-alive connection:
tests/bench/http_clients.py) for a fixed number of requests after a short warm-up; first, the
floor below through both the bench's clients and requests Sessions, with the CPU each spends per
request: they share the server's two cores. Each history is measured in `BENCH_READS_ROUNDS`
rounds (3) of every endpoint in turn. Printed per endpoint, the median of the rounds: req/s, p50
and p95 on each history, the 1M p50 over the empty one's and over the small one's, and the
targets (p95 < 100 ms, ratio <= 1.5). The API calls are alice's (2,000 imports, 200,000 runs);
the dashboard's are staff's. A floor is measured beside them in each history: `GET /api/v1/me`
(a token checked, one user read), what 10 clients get from this machine, at that moment, for a
call that reads nothing of the history.

Then imports created per second: 300 through `POST /api/v1/imports/` one after the other, and
1,000 through `services.create_import` inside one transaction, each in chunks of 100 so that a
slowdown within the series shows; the latter beside a reference that bumps django-celery-beat's
change row on every save as the beat entry used to; and that row alone, bumped 10,000 times in
one transaction in chunks of 2,000 (the cost that grew with every save before it).
`BENCH_READS_CREATE_CHUNKS` (10) scales that series (2: 200 imports each way, 2,000 bumps).

Timings are printed, never asserted.
"""

from __future__ import annotations

import json
import os
import statistics
import time
import uuid
from datetime import timedelta

import pytest
import requests
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.db import connection, transaction
from django.test import Client
from django.utils import timezone
from knox.models import AuthToken

from project.devservices import free_port
from schedules import services
from schedules.models import Dataset, ImportRun, ScheduledImport
from schedules.web_sessions import MODEL_BACKEND, SessionStore
from tests.bench import http_clients
from tests.conftest import answers, wait_for

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.processes,
    pytest.mark.timeout(1800),
]

IMPORTS = int(os.environ.get("BENCH_READS_IMPORTS", "10000"))
RUNS = int(os.environ.get("BENCH_READS_RUNS", "1000000"))
# A small history first (the newest runs of the year): a page of runs to serve in every list.
SMALL_RUNS = RUNS // 100
CLIENTS = 10
REQUESTS = int(os.environ.get("BENCH_READS_REQUESTS", "300"))
ROUNDS = int(os.environ.get("BENCH_READS_ROUNDS", "3"))
# The creation series, in chunks of 100 imports: the service's (10), the API's (3 at most), and
# the change row's bumps (5 chunks of 200 per chunk here: 2,000). A small number runs the
# series in seconds, to see that the bench still works; a trend needs the default.
CREATE_CHUNKS = int(os.environ.get("BENCH_READS_CREATE_CHUNKS", "10"))
BUMPS_CHUNK = 200 * CREATE_CHUNKS
WARMUP = 20
USERS = ("alice", "bob", "carol", "dave", "ops")
IN_PROGRESS = 20
P95_TARGET_MS = 100
FLOOR = "floor: GET /me"
RATIO_TARGET = 1.5

CRONS = [f"{m} {h} * * *" for m, h in zip(range(0, 60, 5), range(0, 24, 2), strict=False)] + [
    "*/15 * * * *", "0 * * * *", "30 2 * * 1-5", "0 6 1 * *", "@daily", "@hourly",
    "0 0 * * 0", "45 23 * * *", "0 12 * * 1,3,5", "10 4 1,15 * *",
]  # fmt: skip
INTERVALS = [60, 300, 900, 1800, 3600, 7200, 21600, 43200, 86400, 604800, 120, 600, 1200, 2700,
             5400, 10800, 14400, 28800]  # fmt: skip
ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Asia/Tokyo"]


# --- building the history ------------------------------------------------------------------


def make_users() -> dict[str, object]:
    User = get_user_model()
    users = {}
    for name in USERS:
        users[name] = User.objects.create_user(
            name, f"{name}@example.com", "pw", is_staff=(name == "ops")
        )
    return users


def make_imports(users: dict[str, object]) -> list[int]:
    """IMPORTS imports shared round-robin among the users (no beat entries: reads need none)."""
    owners = list(users.values())
    datasets = Dataset.objects.bulk_create(
        [Dataset(owner=owner, name=f"data-{n}") for owner in owners for n in range(20)]
    )
    by_owner: dict[int, list[Dataset]] = {}
    for ds in datasets:
        by_owner.setdefault(ds.owner_id, []).append(ds)
    now = timezone.now()
    schedules = [("cron", expr, None) for expr in CRONS] + [
        ("interval", "", seconds) for seconds in INTERVALS
    ]
    next_at: dict[tuple, object] = {}
    imports = []
    for n in range(IMPORTS):
        owner = owners[n % len(owners)]
        kind, expr, seconds = schedules[n % len(schedules)]
        zone = ZONES[(n // len(schedules)) % len(ZONES)]
        imp = ScheduledImport(
            owner=owner,
            name=f"import {n:05d}",
            description="nightly product feed" if n % 3 else "",
            source_url=f"https://feeds.example.com/{n}/products.csv",
            dataset=by_owner[owner.pk][n % 20],
            key_column="sku",
            schedule_type=kind,
            cron_expression=expr,
            interval_seconds=seconds,
            timezone=zone,
            webhook_secret="0" * 64,
        )
        key = (kind, expr, seconds, zone)
        if key not in next_at:
            next_at[key] = imp.next_runs(1, after=now)[0]
        imp.next_run_at = next_at[key]
        imports.append(imp)
    created = ScheduledImport.objects.bulk_create(imports, batch_size=2000)
    return [imp.pk for imp in created]


def make_runs_in_progress(import_ids: list[int]) -> None:
    """IN_PROGRESS runs queued or running now, the same on both histories."""
    now = timezone.now()
    ImportRun.objects.bulk_create(
        [
            ImportRun(
                scheduled_import_id=import_ids[n * 7],
                trigger="schedule",
                status="running" if n % 2 else "queued",
                queued_at=now - timedelta(seconds=n * 13),
                started_at=now - timedelta(seconds=n * 13) if n % 2 else None,
                attempts=1 if n % 2 else 0,
                bytes_read=n * 1000,
                bytes_total=50_000,
            )
            for n in range(IN_PROGRESS)
        ]
    )


def run_column_values() -> tuple[list[str], list[str], list[object]]:
    """The columns, SQL expressions and parameters of one generated finished run.

    Every concrete column of ImportRun is given (its Python default when the history has
    nothing to say), so the statement keeps working as the model grows columns.
    """
    # `g` is the series (1..RUNS); `imp` the import's id; `h` a hash of g in 0..99.
    status = (
        "CASE WHEN h < 88 THEN 'succeeded' WHEN h < 93 THEN 'failed' WHEN h < 96 THEN 'partial'"
        " WHEN h < 98 THEN 'skipped' WHEN h < 99 THEN 'timed_out' ELSE 'cancelled' END"
    )
    queued = "now() - interval '365 days' * (g::float8 / %(runs)s)"
    expressions = {
        "scheduled_import_id": "imp",
        "trigger": "CASE WHEN mod(h, 10) = 0 THEN 'manual' ELSE 'schedule' END",
        "scheduled_for": (
            f"CASE WHEN mod(h, 10) = 0 THEN NULL ELSE date_trunc('second', {queued}) END"
        ),
        "status": status,
        "queued_at": queued,
        "started_at": f"{queued} + interval '2 seconds'",
        "finished_at": f"{queued} + interval '2 seconds' + (h * 300) * interval '1 ms'",
        "duration_ms": "h * 300",
        "attempts": "CASE WHEN h BETWEEN 88 AND 92 THEN 4 ELSE 1 END",
        "rows_read": "1000 + h",
        "rows_inserted": "h",
        "rows_updated": "mod(h, 7)",
        "rows_unchanged": "1000 - mod(h, 7)",
        "rows_failed": "CASE WHEN h BETWEEN 93 AND 95 THEN 3 ELSE 0 END",
        "bytes_read": "65536 + h",
        "bytes_total": "65536 + h",
        "error_message": "CASE WHEN h BETWEEN 88 AND 92 THEN 'The source answered HTTP 503 "
        "(service unavailable) on every attempt.' ELSE '' END",
        "worker": "'worker@bench'",
    }
    columns, values, params = [], [], []
    for field in ImportRun._meta.concrete_fields:
        if field.primary_key:
            continue
        columns.append(field.column)
        if field.column in expressions:
            values.append(expressions[field.column])
            continue
        default = field.get_default()
        if isinstance(default, dict | list):
            default = json.dumps(default)
        values.append("%(p" + str(len(params)) + ")s")
        params.append(default)
    return columns, values, params


def add_runs(first: int, last: int, total: int = RUNS) -> float:
    """Finished runs number `first`..`last` of a year of `total` (run g is queued g/total of a
    year ago), round-robin over the imports; the imports' counters follow. Seconds taken."""
    started = time.monotonic()
    columns, values, defaults = run_column_values()
    table = ImportRun._meta.db_table
    named = {f"p{n}": value for n, value in enumerate(defaults)}
    sql = (
        f"INSERT INTO {table} ({', '.join(columns)}) "
        f"SELECT {', '.join(values)} FROM ("
        "  SELECT g, ids[1 + g %% array_length(ids, 1)] AS imp, abs(hashint4(g)) %% 100 AS h"
        "  FROM generate_series(%(first)s, %(last)s) AS g,"
        "       (SELECT array_agg(id ORDER BY id) AS ids FROM schedules_scheduledimport) AS i"
        ") AS s"
    )
    with connection.cursor() as cursor:
        # The run tally trigger counts runs as they finish; a generated past is not a finish.
        cursor.execute(f"ALTER TABLE {table} DISABLE TRIGGER USER")
        try:
            cursor.execute(sql, {"first": first, "last": last, "runs": total, **named})
        finally:
            cursor.execute(f"ALTER TABLE {table} ENABLE TRIGGER USER")
        cursor.execute(COUNTERS_SQL.format(table=table))
    vacuum()
    return time.monotonic() - started


# The imports' counters and last results, as their runs left them.
COUNTERS_SQL = """
    UPDATE schedules_scheduledimport AS imp SET
        total_runs = agg.total, successful_runs = agg.ok, partial_runs = agg.partial,
        failed_runs = agg.failed, last_run_at = last.finished_at, last_run_status = last.status,
        consecutive_failures = CASE WHEN last.status IN ('failed', 'timed_out') THEN 1 ELSE 0 END
    FROM (
        SELECT scheduled_import_id AS id, count(*) AS total,
               count(*) FILTER (WHERE status = 'succeeded') AS ok,
               count(*) FILTER (WHERE status = 'partial') AS partial,
               count(*) FILTER (WHERE status IN ('failed', 'timed_out')) AS failed
        FROM {table} GROUP BY scheduled_import_id
    ) AS agg,
    (
        SELECT DISTINCT ON (scheduled_import_id) scheduled_import_id AS id, status, finished_at
        FROM {table} WHERE finished_at IS NOT NULL
        ORDER BY scheduled_import_id, queued_at DESC
    ) AS last
    WHERE imp.id = agg.id AND imp.id = last.id
"""


def keep_ticks_ahead() -> None:
    """Every import's next tick a quarter of an hour ahead, as a running beat keeps them: with
    no beat here, a minutely import would otherwise turn late while the bench measures."""
    ahead = timezone.now() + timedelta(minutes=15)
    fields = ("schedule_type", "cron_expression", "interval_seconds", "timezone")
    for values in ScheduledImport.objects.values_list(*fields).order_by().distinct():
        key = dict(zip(fields, values, strict=True))
        tick = ScheduledImport(**key).next_runs(1, after=ahead)[0]
        ScheduledImport.objects.filter(**key).update(next_run_at=tick)


def vacuum() -> None:
    # What autovacuum does by itself on a table that grew for a year: statistics and the
    # visibility map (index-only scans). Outside a transaction, as VACUUM must be.
    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM ANALYZE {ImportRun._meta.db_table}")
        cursor.execute(f"VACUUM ANALYZE {ScheduledImport._meta.db_table}")


# --- measuring -----------------------------------------------------------------------------


def a_year_for_ops() -> tuple[list[int], Client]:
    """IMPORTS imports with RUNS runs of history (vacuumed), and a test client signed in as the
    superuser `ops`: the admin's and the dashboard's benches' given."""
    started = time.monotonic()
    users = make_users()
    import_ids = make_imports(users)
    make_runs_in_progress(import_ids)
    if RUNS:
        add_runs(1, RUNS)
    keep_ticks_ahead()
    vacuum()
    print(f"\nbuilt {len(import_ids):,} imports, {RUNS:,} runs in "
          f"{time.monotonic() - started:.0f}s")  # fmt: skip
    root = users["ops"]
    root.is_superuser = True
    root.save(update_fields=["is_superuser"])
    client = Client()
    client.force_login(root)
    return import_ids, client


def token_for(user) -> str:
    _, token = AuthToken.objects.create(user=user, expiry=None)
    return token


def session_cookie_for(user) -> dict[str, str]:
    """A logged-in staff session, as the admin's login form would leave it."""
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = MODEL_BACKEND
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    return {settings.SESSION_COOKIE_NAME: session.session_key}


def load(base: str, path: str, headers: dict[str, str], cookies: dict[str, str]) -> dict:
    """REQUESTS requests by CLIENTS concurrent clients (after WARMUP): req/s, p50, p95 (ms)."""
    return http_clients.load(
        base, path, headers, cookies, clients=CLIENTS, count=REQUESTS, warmup=WARMUP
    )


def endpoints(one_import: int) -> list[tuple[str, str, str]]:
    """(name, path, who): the reads of target 2."""
    return [
        ("live.json", "/dashboard/live.json", "staff"),
        ("dashboard page", "/dashboard/", "staff"),
        ("GET /runs/", "/api/v1/runs/", "alice"),
        ("GET /imports/", "/api/v1/imports/", "alice"),
        ("GET /imports/{id}/runs/", f"/api/v1/imports/{one_import}/runs/", "alice"),
        # The floor: an authenticated call that reads nothing of the history, same clients.
        (FLOOR, "/api/v1/me", "alice"),
    ]


def measure_all(base: str, one_import: int, auth: dict[str, tuple[dict, dict]]) -> dict:
    """Every endpoint ROUNDS times, round after round, each figure the median of its rounds:
    two runs of one bench minutes apart differed by up to 70 % on one endpoint, and a single
    round cannot tell a change from that. The floor is measured before the first endpoint and
    after the last of each round (the machine's load drifts)."""
    reads = endpoints(one_import)
    rounds: list[dict] = []
    for _ in range(ROUNDS):
        (_, floor_path, floor_who), measured = reads[-1], {}
        before = load(base, floor_path, *auth[floor_who])
        for name, path, who in reads[:-1]:
            measured[name] = load(base, path, *auth[who])
        after = load(base, floor_path, *auth[floor_who])
        measured[FLOOR] = {key: (before[key] + after[key]) / 2 for key in before}
        rounds.append(measured)
    return {
        name: {key: statistics.median(r[name][key] for r in rounds) for key in rounds[0][name]}
        for name in rounds[0]
    }


def print_reads(phases: dict[str, dict]) -> None:
    """One line per endpoint: each history's req/s, p50, p95; the 1M p50 over the empty one's
    (the target), over the small history's (a full page of runs served in both), and over the
    empty one's with each taken over its history's floor (the machine's load drifts between
    the histories; this cancels it)."""
    empty, small, full = phases.values()
    print(
        f"\n=== reads: {IMPORTS:,} imports, {CLIENTS} concurrent clients, {REQUESTS} requests,"
        f" median of {ROUNDS} rounds"
    )
    print("per history: req/s, p50 ms, p95 ms")
    head = "".join(f" | {name:>24}" for name in phases)
    targets = f"p95<{P95_TARGET_MS}, ratio<={RATIO_TARGET}"
    print(f"{'endpoint':24}{head} | 1M/empty | 1M/small | over floor | {targets}")
    for name in empty:
        cells = "".join(
            f" | {p[name]['rps']:7.1f} {p[name]['p50']:7.1f} {p[name]['p95']:7.1f}"
            for p in phases.values()
        )
        ratio = full[name]["p50"] / empty[name]["p50"]
        small_ratio = full[name]["p50"] / small[name]["p50"]
        floored = ratio / (full[FLOOR]["p50"] / empty[FLOOR]["p50"])
        met = full[name]["p95"] < P95_TARGET_MS and ratio <= RATIO_TARGET
        verdict = "(reference)" if name == FLOOR else "met" if met else "NOT met"
        print(f"{name:24}{cells} | {ratio:8.2f} | {small_ratio:8.2f} | {floored:10.2f} | {verdict}")


# --- creating imports ----------------------------------------------------------------------


def create_through_api(base: str, token: str, count: int = 300) -> list[float]:
    """Imports per second of each chunk of 100 `POST /api/v1/imports/`, one after the other."""
    session = requests.Session()
    session.headers["Authorization"] = f"Token {token}"
    tag = uuid.uuid4().hex[:6]
    rates = []
    for chunk in range(count // 100):
        started = time.perf_counter()
        for n in range(100):
            body = {
                "name": f"api {tag} {chunk}-{n}",
                "source_url": "https://feeds.example.com/api.csv",
                "dataset": "api-created",
                "key_column": "sku",
                "schedule_type": "cron",
                "cron_expression": CRONS[n % len(CRONS)],
                "timezone": ZONES[n % len(ZONES)],
            }
            response = session.post(f"{base}/api/v1/imports/", json=body, timeout=60)
            assert response.status_code == 201, response.text[:300]
        rates.append(100 / (time.perf_counter() - started))
    return rates


def create_in_one_transaction(owner, count: int = 1000, bump: bool = False) -> list[float]:
    """Imports per second of each chunk of 100 `services.create_import`, all in one
    transaction (rolled back). `bump`: also bump django-celery-beat's change row twice per
    save, as every `PeriodicTask.save()` did (pre_save signal and save())."""
    from django_celery_beat.models import PeriodicTasks

    tag = uuid.uuid4().hex[:6]
    rates = []
    with transaction.atomic():
        for chunk in range(count // 100):
            started = time.perf_counter()
            for n in range(100):
                services.create_import(
                    owner,
                    dataset="service-created",
                    name=f"service {tag} {chunk}-{n}",
                    source_url="https://feeds.example.com/service.csv",
                    key_column="sku",
                    schedule_type="cron",
                    cron_expression=CRONS[n % len(CRONS)],
                    timezone=ZONES[n % len(ZONES)],
                )
                if bump:
                    PeriodicTasks.update_changed()
                    PeriodicTasks.update_changed()
            rates.append(100 / (time.perf_counter() - started))
        transaction.set_rollback(True)
    return rates


def bumps_in_one_transaction(chunks: int = 5, size: int = 2000) -> list[float]:
    """Bumps per second of django-celery-beat's change row, chunk by chunk, all in one
    transaction (rolled back): the cost every import's save paid twice, growing with the bumps
    before it (each one leaves a row version that the next must step over)."""
    from django_celery_beat.models import PeriodicTasks

    rates = []
    with transaction.atomic():
        for _ in range(chunks):
            started = time.perf_counter()
            for _ in range(size):
                PeriodicTasks.update_changed()
            rates.append(size / (time.perf_counter() - started))
        transaction.set_rollback(True)
    return rates


def rates_line(rates: list[float]) -> str:
    chunks = " ".join(f"{rate:6.1f}" for rate in rates)
    return f"{chunks}   (last/first {rates[-1] / rates[0]:.2f})"


# --- the bench -----------------------------------------------------------------------------


def start_web(processes, **extra: str) -> str:
    """The Procfile's `web` on a free port with `extra` environment: its address once it answers."""
    port = free_port()
    # As in production: without DEBUG (which keeps every query of a request in memory).
    processes.start(
        "web", PORT=str(port), DJANGO_DEBUG="0", DJANGO_SECRET_KEY=settings.SECRET_KEY, **extra
    )
    base = f"http://127.0.0.1:{port}"
    wait_for(lambda: answers(f"{base}/admin/login/"), 60, what="web")
    return base


def bench_reads_at_a_year_of_history(processes) -> None:
    started = time.monotonic()
    users = make_users()
    import_ids = make_imports(users)
    make_runs_in_progress(import_ids)
    vacuum()
    print(f"\nbuilt {IMPORTS:,} imports in {time.monotonic() - started:.1f}s")
    alice = users["alice"]
    one_import = ScheduledImport.objects.filter(owner=alice).order_by("id")[10].pk
    auth = {
        "alice": ({"Authorization": f"Token {token_for(alice)}"}, {}),
        "staff": ({}, session_cookie_for(users["ops"])),
    }
    base = start_web(processes)

    # What the load generator costs, on the machine it shares with the server it measures.
    options = {"clients": CLIENTS, "count": REQUESTS, "warmup": WARMUP}
    compared = http_clients.compare(base, "/api/v1/me", auth["alice"][0], **options)
    print(f"clients, {FLOOR}: {compared}")

    phases = {}
    keep_ticks_ahead()
    phases["empty (0 runs)"] = measure_all(base, one_import, auth)
    built = add_runs(1, SMALL_RUNS)
    print(f"built {SMALL_RUNS:,} runs (the last days) in {built:.1f}s")
    keep_ticks_ahead()
    phases[f"small ({SMALL_RUNS:,} runs)"] = measure_all(base, one_import, auth)
    built = add_runs(SMALL_RUNS + 1, RUNS)
    print(f"built {RUNS - SMALL_RUNS:,} more runs over the year in {built:.1f}s")
    keep_ticks_ahead()
    phases[f"{RUNS:,} runs"] = measure_all(base, one_import, auth)
    print_reads(phases)

    print("\n=== creating imports (chunks of 100, imports/s)")
    api_rates = create_through_api(base, token_for(alice), 100 * min(3, CREATE_CHUNKS))
    print(f"API, one after the other:          {rates_line(api_rates)}")
    bob = users["bob"]
    count = 100 * CREATE_CHUNKS
    print(f"service, one transaction:          {rates_line(create_in_one_transaction(bob, count))}")
    bumped = create_in_one_transaction(bob, count, bump=True)
    print(f"reference, change row bumped      {rates_line(bumped)}")
    bumps = rates_line(bumps_in_one_transaction(size=BUMPS_CHUNK))
    print(f"the change row alone (bumps/s, chunks of {BUMPS_CHUNK:,}): {bumps}")
    print(f"(bench total {time.monotonic() - started:.0f}s)")
