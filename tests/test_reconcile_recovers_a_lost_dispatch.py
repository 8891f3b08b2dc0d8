"""A run's message deleted from Redis before any worker took it: reconciliation finds the queued
run whose message the broker no longer holds, counts it as a missed tick (the import is late)
and, the import coalescing missed ticks, sends it again; the tick still runs exactly once."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest
import redis
from django.conf import settings
from django.utils import timezone

from schedules.models import ImportRun, ScheduledImport
from tests.conftest import wait_for
from tests.factories import PRODUCTS_CSV, make_import
from tests.reliability import FAST

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]


def delete_run_messages(client: redis.Redis) -> int:
    deleted = 0
    for raw in client.lrange("celery", 0, -1):
        if json.loads(raw)["headers"]["task"] == "importbeat.execute_run":
            deleted += client.lrem("celery", 0, raw)
    return deleted


def test_a_run_message_deleted_from_redis_is_recovered_within_the_grace_period(
    alice, csv_server, processes
):
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    imp = make_import(alice, csv_server.serve("/p.csv", PRODUCTS_CSV), interval_seconds=3600)
    # Given an import whose tick is due, dispatched by beat while no worker runs
    due = timezone.now() - timedelta(seconds=1)
    ScheduledImport.objects.filter(pk=imp.pk).update(next_run_at=due)
    processes.start("beat", **FAST)
    run = wait_for(
        lambda: ImportRun.objects.filter(scheduled_import=imp).first(),
        30,
        what="beat's run\n" + processes.logs(),
    )
    # When its message is deleted from Redis (beat publishes it after its commit, and its
    # maintenance messages share the queue), and a worker starts
    assert wait_for(lambda: delete_run_messages(client), 30, what="its message") == 1
    deleted_at = time.monotonic()
    processes.start("worker", **FAST)

    # Then reconciliation sends it again within the grace period (plus one maintenance pass)
    wait_for(
        lambda: ImportRun.objects.get(pk=run.pk).status == "succeeded",
        60,
        what="the recovered run\n" + processes.logs(),
    )
    recovered_s = time.monotonic() - deleted_at
    imp.refresh_from_db()
    runs = ImportRun.objects.filter(scheduled_import=imp)
    print(
        f"\n[figures] lost dispatch: recovered_in={recovered_s:.1f}s runs={runs.count()} "
        f"missed_ticks={imp.missed_ticks} late_since={imp.late_since}",
        flush=True,
    )
    grace = int(FAST["MISSED_TICK_GRACE_SECONDS"]) + 2 * int(FAST["MAINTENANCE_INTERVAL_SECONDS"])
    assert recovered_s < grace + 20
    assert runs.count() == 1
    assert imp.missed_ticks >= 1 and imp.late_since is not None
