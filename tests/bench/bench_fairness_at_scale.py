"""Benchmark: another user's run behind one owner's thousands of runs over MAX_RUNNING_PER_OWNER.

Bob has `BENCH_FAIRNESS_RUNS` imports (2000 and 5000: a comma-separated list, one pass each) all
due at once; beat's dispatch (schedules.dispatch.dispatch_due, called here as beat calls it)
queues a run of each. Right after, alice triggers a run of hers. One Procfile worker
(concurrency 4, MAX_RUNNING_PER_OWNER 2) takes them. Printed: how long beat's dispatch took,
how long alice's run took from her trigger to its end, how long until all of bob's runs had
ended (`BENCH_FAIRNESS_DRAIN=0` skips that wait), and the execute_run messages the worker
received (each a look at a run: one per run at best). `BENCH_FAIRNESS_LINE_UP=0` has beat send
every run, none put in the owner's line by beat: the workers' first look at each parks it.

Before the owner's line (tasks/fairness.py), a run over the cap came back every few seconds as
a Celery retry, and alice's message waited behind every one of bob's first looks and their
returns; now a run over the cap is parked once, and beat's batch puts an owner's runs past the
cap in the owner's line directly, so alice waits behind a few messages. Timings are printed,
never asserted.
"""

from __future__ import annotations

import os
import time
from datetime import timedelta

import pytest
from celery import current_app
from django.conf import settings

from common import database_clock
from schedules import dispatch, services
from schedules.models import Dataset, ImportRun, ScheduledImport
from tests.bench.figures import report
from tests.conftest import wait_for
from tests.factories import make_import

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.processes,
    pytest.mark.timeout(3600),
]

SIZES = [int(n) for n in os.environ.get("BENCH_FAIRNESS_RUNS", "2000,5000").split(",") if n]
DRAIN = os.environ.get("BENCH_FAIRNESS_DRAIN", "1") != "0"
# 0: beat sends every run, none lined up (what the workers' parking alone costs).
LINE_UP = os.environ.get("BENCH_FAIRNESS_LINE_UP", "1") != "0"
WORKER = {
    "WORKER_CONCURRENCY": "4",
    "MAX_RUNNING_PER_OWNER": "2",
    "DJANGO_DEBUG": "0",
}


def due_imports(owner, url: str, count: int) -> list[ScheduledImport]:
    """`count` imports of `owner`'s, each with a dataset of its own, due now."""
    datasets = Dataset.objects.bulk_create(
        [Dataset(owner=owner, name=f"feed {n:05d}") for n in range(count)], batch_size=2000
    )
    due = database_clock.now() - timedelta(seconds=1)
    return ScheduledImport.objects.bulk_create(
        [
            ScheduledImport(owner=owner, name=f"feed {n:05d}", dataset=dataset, key_column="sku",
                            source_url=url, schedule_type="interval", interval_seconds=86400,
                            next_run_at=due)
            for n, dataset in enumerate(datasets)
        ],
        batch_size=2000,
    )  # fmt: skip


def received(processes) -> int:
    """The execute_run messages the worker received so far."""
    return sum(
        log.read_text(errors="replace").count("] received")
        for log in processes.log_dir.glob("worker-*.log")
    )


@pytest.mark.parametrize("count", SIZES)
def bench_another_users_run_behind_one_owners_due_runs(alice, bob, csv_server, processes, count):
    url = csv_server.serve("/p.csv", "sku,name\nA,1\nB,2\n")
    processes.start("worker", DJANGO_SECRET_KEY=settings.SECRET_KEY, **WORKER)
    wait_for(lambda: current_app.control.ping(timeout=0.5), 60, what="worker\n" + processes.logs())
    alices = make_import(alice, url, name="alice's", dataset="alices")
    bobs = due_imports(bob, url, count)

    started = time.monotonic()
    dispatched = dispatch.dispatch_due(None if LINE_UP else services.send_runs)
    dispatch_s = time.monotonic() - started
    run = services.enqueue_run(alices, trigger="manual", user=alice)
    queued = time.monotonic()
    wait_for(
        ImportRun.objects.filter(pk=run.pk, finished_at__isnull=False).exists, 1800,
        interval=0.05, what="alice's run\n" + processes.logs(),
    )  # fmt: skip
    alices_run_s = time.monotonic() - queued
    figures = {
        "bobs_runs": dispatched.runs,
        "lined_up_by_beat": LINE_UP,
        "dispatch_s": round(dispatch_s, 2),
        "alices_run_s": round(alices_run_s, 2),
        "messages_by_then": received(processes),
    }
    if DRAIN:
        ended = ImportRun.objects.filter(
            scheduled_import__in=[imp.pk for imp in bobs], finished_at__isnull=False
        )
        wait_for(lambda: ended.count() == count, 3600, interval=1,
                 what="bob's runs\n" + processes.logs()[-5000:])  # fmt: skip
        figures["all_bobs_ended_s"] = round(time.monotonic() - started, 1)
        figures["messages"] = received(processes)
        figures["succeeded"] = ended.filter(status="succeeded").count()
    report(f"another user's run behind {count} of one owner's due runs", **figures)
