"""Benchmark: the admin's Pause, Resume and Cancel on many imports, and deactivating their
owner (schedules/statuses.py).

`BENCH_STATUS_IMPORTS` every-minute imports of one owner (10,000) with their beat entries, built
in bulk (tests/bench/bench_beat_scale.py). As a superuser in this process, the admin's list
action is posted on all of them ("select all"), Pause, Resume and Cancel, then Resume again and
the owner deactivated. Printed for each: the time and the number of statements; for
reference, the same pause one import at a time through services.pause_import, on the first 300
(the way each was changed before). Timings are printed, never asserted.
"""

from __future__ import annotations

import os
import time

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from schedules import services
from schedules.models import ScheduledImport
from tests.bench.bench_beat_scale import make_imports

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(1800)]

IMPORTS = int(os.environ.get("BENCH_STATUS_IMPORTS", "10000"))
# The first 300 one at a time (half of them when BENCH_STATUS_IMPORTS is small: the owner's
# deactivation then has the rest to pause, not a negative count).
ONE_BY_ONE = min(300, IMPORTS // 2)


def timed(what: str, count: int, act) -> None:
    started = time.monotonic()
    with CaptureQueriesContext(connection) as queries:
        act()
    took = time.monotonic() - started
    print(f"{what:44s} {count:6,} imports {took:7.2f}s  {took / count * 1000:6.2f} ms/import"
          f"  {len(queries):5,} statements")  # fmt: skip


def bench_many_imports_change_status_at_once(admin_user) -> None:
    ids = make_imports(IMPORTS)
    owner = ScheduledImport.objects.get(pk=ids[0]).owner
    admin = Client()
    admin.force_login(admin_user)

    def action(name: str):
        def post() -> None:
            # "Select all 10,000 imports" (a form holds 1,000 fields at most)
            response = admin.post(
                "/admin/schedules/scheduledimport/",
                {"action": name, "select_across": "1", "index": "0", "_selected_action": ids[0]},
            )
            assert response.status_code == 302

        return post

    print(f"\n=== status changes of {IMPORTS:,} imports with their beat entries")
    for name in ("pause", "resume", "cancel", "resume"):
        timed(f"admin action {name}", IMPORTS, action(name))

    def one_by_one() -> None:
        for imp in ScheduledImport.objects.filter(pk__in=ids[:ONE_BY_ONE]):
            services.pause_import(imp)

    timed("services.pause_import, one at a time", ONE_BY_ONE, one_by_one)

    def deactivate() -> None:
        owner.is_active = False
        owner.save()

    timed("the owner deactivated (pauses the rest)", IMPORTS - ONE_BY_ONE, deactivate)
    paused = ScheduledImport.objects.filter(pk__in=ids, status="paused").count()
    print(f"paused after it: {paused:,} of {IMPORTS:,}")


def bench_run_now_over_many_imports(admin_user) -> None:
    """The admin's Run now on every import (schedules/manual_runs.py), against
    services.enqueue_run one import at a time on ONE_BY_ONE of them (the way each was queued
    before). The runs' messages go to the suite's broker."""
    from schedules.models import ImportRun

    ids = make_imports(IMPORTS)
    admin = Client()
    admin.force_login(admin_user)

    def run_now() -> None:
        response = admin.post(
            "/admin/schedules/scheduledimport/",
            {"action": "run_now", "select_across": "1", "index": "0", "_selected_action": ids[0]},
        )
        assert response.status_code == 302

    print(f"\n=== Run now on {IMPORTS:,} imports")
    timed("admin action run_now", IMPORTS, run_now)
    queued = ImportRun.objects.filter(status="queued", trigger="manual").count()
    print(f"queued after it: {queued:,} of {IMPORTS:,}")
    ImportRun.objects.all().delete()

    def one_by_one() -> None:
        for imp in ScheduledImport.objects.filter(pk__in=ids[:ONE_BY_ONE]):
            services.enqueue_run(imp, trigger="manual", user=admin_user)

    timed("services.enqueue_run, one at a time", ONE_BY_ONE, one_by_one)
