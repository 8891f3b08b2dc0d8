"""Benchmark: deep pages of the lists at a year of history (hunt "deep pages").

Run with `make bench`, or alone (README "Benchmark: deep pages"). It builds the reads bench's
history (tests/bench/bench_reads.py: 10,000 imports, then 1,000,000 finished runs over a
year), with alice holding four fifths of the imports and their runs (800,000) and `ops` the
superuser, and asks each deep page `BENCH_DEEP_ROUNDS` times (3) in the bench's own process:
the API's pages by number (`?page=N` of `GET /runs/`, within the limit, past it, past the end,
and `?page=last`) and the admin's run list (page 100, its last page and a page past the end).

Each page is asked the old code's way first (`as_before`: pages by number as deep as asked,
the admin's one OFFSET over whole runs), then as now. Printed per page: the median wall ms
and the answer's status, before and now. Timings are printed, never asserted.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import time
from collections.abc import Iterator
from unittest import mock

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client, override_settings

from schedules import rows
from schedules.admin_lists import ChangeListAtScale
from schedules.api import pagination
from schedules.models import ImportRun, ScheduledImport
from tests.bench import bench_reads as history

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(1800),
]

ROUNDS = int(os.environ.get("BENCH_DEEP_ROUNDS", "3"))
API_PAGE = 50
ADMIN_PAGE = 100


def build() -> None:
    """The reads bench's year, but alice holds the imports of bob, carol and dave too."""
    started = time.monotonic()
    users = history.make_users()
    history.make_imports(users)
    others = [users[name].pk for name in ("bob", "carol", "dave")]
    alice = users["alice"].pk
    with connection.cursor() as cursor:
        # Their datasets follow them, renamed apart from hers (one name per owner).
        cursor.execute(
            "UPDATE schedules_dataset SET name = name || '-' || owner_id, owner_id = %s"
            " WHERE owner_id = ANY(%s)",
            [alice, others],
        )
        cursor.execute(
            "UPDATE schedules_scheduledimport SET owner_id = %s WHERE owner_id = ANY(%s)",
            [alice, others],
        )
    if history.RUNS:
        history.add_runs(1, history.RUNS)
    history.vacuum()
    ops = users["ops"]
    ops.is_superuser = True
    ops.save(update_fields=["is_superuser"])
    print(f"\nbuilt {history.IMPORTS:,} imports, {history.RUNS:,} runs in "
          f"{time.monotonic() - started:.0f}s")  # fmt: skip


def before_and_now(call) -> tuple[tuple[float, object], tuple[float, object]]:
    """The median ms and last answer of `call` the old code's way and now, taken in turns
    after one unmeasured call each (the first reads of a page warm the cache for the next)."""
    figures: dict[bool, list[float]] = {True: [], False: []}
    answers: dict[bool, object] = {}
    for measured in (False, *[True] * ROUNDS):
        for old in (True, False):
            with as_before() if old else contextlib.nullcontext():
                started = time.perf_counter()
                answers[old] = call()
                if measured:
                    figures[old].append((time.perf_counter() - started) * 1000)
    return (
        (statistics.median(figures[True]), answers[True]),
        (statistics.median(figures[False]), answers[False]),
    )


def one_offset_over_whole_rows(changelist: ChangeListAtScale, bottom: int, count: int) -> list:
    """How the admin read a page before its ids came first."""
    return list(changelist.queryset[bottom : bottom + count])


@contextlib.contextmanager
def as_before() -> Iterator[None]:
    """The old code's reads: pages by number as deep as asked, the admin's OFFSET over whole
    runs."""
    with (
        mock.patch.object(pagination, "MAX_PAGE_OFFSET", rows.MAX_ID),
        mock.patch.object(ChangeListAtScale, "_rows", one_offset_over_whole_rows),
    ):
        yield


@override_settings(DEBUG=False)
def bench_deep_pages_at_a_year_of_history() -> None:
    build()
    User = get_user_model()
    alice, ops = User.objects.get(username="alice"), User.objects.get(username="ops")
    api = Client(HTTP_AUTHORIZATION=f"Token {history.token_for(alice)}")
    admin = Client()
    admin.force_login(ops)
    her_runs = ImportRun.objects.filter(scheduled_import__owner=alice).count()
    last_api = her_runs // API_PAGE + 1
    last_admin = ImportRun.objects.count() // ADMIN_PAGE + 1
    print(f"alice: {ScheduledImport.objects.filter(owner=alice).count():,} imports, "
          f"{her_runs:,} runs ({last_api:,} pages of {API_PAGE}); "
          f"the admin's run list: {last_admin:,} pages of {ADMIN_PAGE}")  # fmt: skip

    middle, runs_admin = last_api // 2, "/admin/schedules/importrun/"
    cases = [
        ("API", "/api/v1/runs/?page=2"),
        ("API", "/api/v1/runs/?page=201"),
        ("API", "/api/v1/runs/?page=202"),
        ("API", f"/api/v1/runs/?page={middle}"),
        ("API", f"/api/v1/runs/?page={last_api}"),
        ("API", "/api/v1/runs/?page=40000"),
        ("API", "/api/v1/runs/?page=last"),
        ("admin", f"{runs_admin}?p=2"),
        ("admin", f"{runs_admin}?p=100"),
        ("admin", f"{runs_admin}?p={last_admin // 2}"),
        ("admin", f"{runs_admin}?p={last_admin}"),
        ("admin", f"{runs_admin}?p=40000"),
    ]
    print(f"\n=== deep pages, median of {ROUNDS}: wall ms and status, the old code's, then now")
    print(f"{'who':6} {'page':48} | {'before':>13} | {'now':>13}")
    for who, path in cases:
        client = api if who == "API" else admin
        (old_ms, old), (ms, response) = before_and_now(lambda: client.get(path))  # noqa: B023
        print(
            f"{who:6} {path:48} | {old_ms:8.0f} {old.status_code:4} | "
            f"{ms:8.0f} {response.status_code:4}"
        )
