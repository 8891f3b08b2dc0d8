"""Benchmark: the workers come back after an outage, with beat dispatching all along.

Run with `make bench` (or this file alone, see the README). 1,000 imports on a 20 s interval
(`BENCH_OUTAGE_IMPORTS`, `BENCH_OUTAGE_INTERVAL`), each with its own dataset and a small CSV
from a local server. Beat runs with no worker for `BENCH_OUTAGE_SECONDS` (120): every tick
becomes a run. Then one Procfile worker (concurrency 2) starts, beat still running.

Printed: the runs that waited and the messages on the queue (and the broker's memory) when the
worker starts, how many of those runs ran and how many were skipped (by beat, schedules.dispatch,
and by the worker, schedules.backlog), the time from the worker's start until every one of them
ended, and then the queue wait of the ticks dispatched after that (started_at - queued_at, p50
and p95): whether the cluster is back on time. New ticks keep coming at `new_ticks_per_s`
meanwhile. For the reference, run this file on a commit before both (every waiting tick ran in
turn): the README gives both.
Timings are printed, never asserted.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
import redis
from django.conf import settings
from django.contrib.auth import get_user_model

from schedules.models import Dataset, ImportRun, ScheduledImport
from tests.bench.figures import percentile, report
from tests.conftest import wait_for
from tests.reliability import FAST

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.processes,
    pytest.mark.timeout(1800),
]

IMPORTS = int(os.environ.get("BENCH_OUTAGE_IMPORTS", "1000"))
INTERVAL = int(os.environ.get("BENCH_OUTAGE_INTERVAL", "20"))
OUTAGE = int(os.environ.get("BENCH_OUTAGE_SECONDS", "120"))
# How long the bench watches the ticks dispatched after the backlog ended.
AFTER = 3 * INTERVAL
CSV = "sku,name,price\n" + "".join(f"S{n},item {n},{n}.50\n" for n in range(100))
# The Procfile's beat and worker, with the grace period of production (60 s).
ENV = {**FAST, "MISSED_TICK_GRACE_SECONDS": "60", "WORKER_CONCURRENCY": "2"}


def make_imports(url: str) -> list[int]:
    owner = get_user_model().objects.create_user("outage", password="x")
    datasets = Dataset.objects.bulk_create(
        [Dataset(owner=owner, name=f"d{n}") for n in range(IMPORTS)], batch_size=2000
    )
    now = datetime.now(UTC)
    imports = ScheduledImport.objects.bulk_create(
        [
            ScheduledImport(
                owner=owner, name=f"import-{n}", source_url=url, dataset=dataset,
                key_column="sku", schedule_type="interval", interval_seconds=INTERVAL,
                next_run_at=now + timedelta(seconds=n * INTERVAL / IMPORTS),
                schedule_changed_at=now,
            )
            for n, dataset in enumerate(datasets)
        ],
        batch_size=2000,
    )  # fmt: skip
    return [imp.pk for imp in imports]


def bench_workers_back_after_an_outage(csv_server, processes):
    url = csv_server.serve("/p.csv", CSV)
    make_imports(url)

    beat = processes.start("beat", **ENV)
    time.sleep(OUTAGE)
    worker_started = datetime.now(UTC)
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    queued_messages = broker.llen("celery")
    broker_memory_mb = broker.info("memory")["used_memory"] / 2**20
    waiting = list(
        ImportRun.objects.filter(queued_at__lt=worker_started).values_list("pk", flat=True)
    )
    clock = time.monotonic()
    processes.start("worker", **ENV)
    wait_for(
        lambda: (
            not ImportRun.objects.filter(
                pk__in=waiting, status__in=ImportRun.ACTIVE_STATUSES
            ).exists()
        ),
        1500,
        what="the runs that waited to end\n" + processes.logs(),
    )
    drained_s = time.monotonic() - clock
    drained_at = datetime.now(UTC)
    ended = ImportRun.objects.filter(pk__in=waiting)
    ran = ended.exclude(status=ImportRun.Status.SKIPPED)
    skipped = ended.filter(status=ImportRun.Status.SKIPPED).count()

    time.sleep(AFTER)
    processes.stop(beat)
    after = ImportRun.objects.filter(queued_at__gt=drained_at, started_at__isnull=False)
    waits = [(r.started_at - r.queued_at).total_seconds() for r in after]
    report(
        "workers back after an outage",
        imports=IMPORTS,
        interval_s=INTERVAL,
        outage_s=OUTAGE,
        waiting_runs=len(waiting),
        queued_messages=queued_messages,
        broker_memory_mb=round(broker_memory_mb, 1),
        ran=ran.count(),
        skipped=skipped,
        # (`ran` is every run not skipped: a source the workers could not read would count
        # failed runs as run)
        outcomes=dict(Counter(ended.values_list("status", flat=True))),
        drained_s=round(drained_s, 1),
        ended_per_s=round(len(waiting) / drained_s, 1),
        new_ticks_per_s=round(IMPORTS / INTERVAL, 1),
        after_runs=len(waits),
        after_wait_p50_s=round(percentile(waits, 0.5), 2) if waits else None,
        after_wait_p95_s=round(percentile(waits, 0.95), 2) if waits else None,
    )
