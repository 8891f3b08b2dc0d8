"""Benchmark: one owner's burst of webhook notifications, and another owner's run behind it.

Bob has `BENCH_WEBHOOK_IMPORTS` imports (1,000) whose runs fail at once, each notifying one
callback on this machine that answers after `BENCH_WEBHOOK_ANSWER_MS` (0: at once; 3000: a
slow receiver). One Procfile worker (concurrency 2) delivers them; alice's run is queued right
after the burst. Printed: when alice's run ended, when bob's last notification was delivered,
and the worker's tasks (an owner's notifications go one at a time, tasks/owner_turns.py: each
parked notification is one task more).

Timings are printed, never asserted.
"""

from __future__ import annotations

import os
import time

import pytest
from celery import current_app
from django.conf import settings
from django.utils import timezone

from schedules import services
from schedules.models import Dataset, ImportRun, NotificationDelivery, ScheduledImport
from schedules.notifications import DELIVER
from tests.bench.figures import report
from tests.conftest import wait_for
from tests.factories import make_import
from tests.webhook_support import Hook, Slow

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.processes,
    pytest.mark.timeout(1800),
]

IMPORTS = int(os.environ.get("BENCH_WEBHOOK_IMPORTS", "1000"))
ANSWER_MS = int(os.environ.get("BENCH_WEBHOOK_ANSWER_MS", "0"))


def burst(owner, callback_url: str) -> list[int]:
    """IMPORTS failed runs of `owner`'s imports, each with its webhook notification, their
    messages sent at once as the runs' commits send them; the notifications' ids."""
    dataset = Dataset.objects.create(owner=owner, name="feeds")
    imports = ScheduledImport.objects.bulk_create(
        [
            ScheduledImport(owner=owner, name=f"feed {n:05d}", dataset=dataset, key_column="sku",
                            source_url=f"https://feeds.example.com/{n}.csv",
                            schedule_type="interval", interval_seconds=3600,
                            callback_url=callback_url, webhook_secret="0" * 64)
            for n in range(IMPORTS)
        ],
        batch_size=2000,
    )  # fmt: skip
    now = timezone.now()
    runs = ImportRun.objects.bulk_create(
        [
            ImportRun(scheduled_import=imp, trigger="schedule", status="failed", queued_at=now,
                      started_at=now, finished_at=now, attempts=1,
                      error_message="cannot reach feeds.example.com (connection refused)")
            for imp in imports
        ],
        batch_size=2000,
    )  # fmt: skip
    deliveries = NotificationDelivery.objects.bulk_create(
        [
            NotificationDelivery(scheduled_import_id=run.scheduled_import_id, run=run,
                                 event="failed", channel="webhook", target=callback_url)
            for run in runs
        ],
        batch_size=2000,
    )  # fmt: skip
    for delivery in deliveries:
        current_app.send_task(DELIVER, args=[delivery.pk])
    return [delivery.pk for delivery in deliveries]


def bench_an_owners_burst_of_webhooks_and_another_owners_run(alice, bob, csv_server, processes):
    receiver = Slow(ANSWER_MS / 1000) if ANSWER_MS else Hook()
    try:
        processes.start("worker", DJANGO_DEBUG="0", DJANGO_SECRET_KEY=settings.SECRET_KEY)
        wait_for(
            lambda: current_app.control.ping(timeout=0.5), 60, what="worker\n" + processes.logs()
        )
        alices = make_import(alice, csv_server.serve("/p.csv", "sku,name\n1,a\n"))

        started = time.monotonic()
        ids = burst(bob, receiver.url)
        run = services.enqueue_run(alices, user=alice)
        queued = time.monotonic()
        finished = ImportRun.objects.filter(pk=run.pk, finished_at__isnull=False)
        wait_for(finished.exists, 1200, interval=0.1, what="alice's run\n" + processes.logs())
        alices_run = time.monotonic() - queued
        delivered = NotificationDelivery.objects.filter(pk__in=ids, status="delivered")
        wait_for(lambda: delivered.count() == IMPORTS, 1200, interval=0.5,
                 what="bob's notifications\n" + processes.logs())  # fmt: skip
        took = time.monotonic() - started
        tasks = sum(
            log.read_text().count("Task importbeat.deliver_notification[")
            for log in processes.log_dir.glob("worker-*.log")
        )
        report("an owner's burst of webhooks", notifications=IMPORTS, answer_ms=ANSWER_MS,
               queued_s=round(queued - started, 1), alices_run_s=round(alices_run, 2),
               all_delivered_s=round(took, 1), deliveries_per_s=round(IMPORTS / took),
               notification_tasks=tasks // 2)  # fmt: skip
    finally:
        receiver.close()
