"""Benchmark: deleting an import with a long history, through the Procfile's `web` and the admin.

One import of alice's gets `BENCH_DELETE_RUNS` finished runs (500,000: a year of a schedule
that ticks every minute and keeps its runs, RUN_RETENTION_DAYS=365), in SQL. Then:

- the admin's confirmation page of its deletion and of the bulk action (in this process), its
  size and time: Django's own listed every run;
- `DELETE /api/v1/imports/{id}/` through gunicorn at its default worker timeout (30 s): the
  answer, how long it took, whether the import is gone, and the web worker's memory after it.

Timings are printed, never asserted.
"""

from __future__ import annotations

import os
import time

import psutil
import pytest
import requests
from django.test import Client

from schedules.models import ImportRun, ScheduledImport
from tests.api_support import SOURCE
from tests.bench import bench_reads
from tests.factories import make_import

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.processes,
    pytest.mark.timeout(1800),
]

RUNS = int(os.environ.get("BENCH_DELETE_RUNS", "500000"))


def bench_deleting_an_import_with_a_year_of_minute_runs(alice, admin_user, processes) -> None:
    imp = make_import(alice, SOURCE)
    started = time.monotonic()
    bench_reads.add_runs(1, RUNS, total=RUNS)  # round-robin over the imports: this one alone
    print(f"\n{ImportRun.objects.filter(scheduled_import=imp).count():,} runs of one import,"
          f" built in {time.monotonic() - started:.1f}s")  # fmt: skip

    admin = Client()
    admin.force_login(admin_user)
    changelist = "/admin/schedules/scheduledimport/"
    for name, ask in (
        ("the admin's confirmation", lambda: admin.get(f"{changelist}{imp.pk}/delete/")),
        (
            "the bulk action's confirmation",
            lambda: admin.post(
                changelist, {"action": "delete_selected", "_selected_action": [imp.pk]}
            ),
        ),
    ):
        started = time.monotonic()
        page = ask()
        print(f"{name:32s} {page.status_code}, {len(page.content):,} bytes in"
              f" {time.monotonic() - started:.1f}s")  # fmt: skip

    base = bench_reads.start_web(processes, WEB_CONCURRENCY="1") + "/api/v1"
    _, web = processes.started[-1]
    headers = {"Authorization": f"Token {bench_reads.token_for(alice)}"}
    started = time.monotonic()
    try:
        answer = requests.delete(f"{base}/imports/{imp.pk}/", headers=headers, timeout=600)
        outcome = str(answer.status_code)
    except requests.RequestException as error:
        outcome = type(error).__name__
    took = time.monotonic() - started
    workers = psutil.Process(web.pid).children(recursive=True)
    memory = ", ".join(f"{worker.memory_info().rss >> 20} MB" for worker in workers)
    gone = not ScheduledImport.objects.filter(pk=imp.pk).exists()
    print(f"{'DELETE /imports/{id}/':32s} {outcome} in {took:.1f}s; the import gone: {gone};"
          f" the web worker after it: {memory}")  # fmt: skip
