"""A retrying run's message is its retry, delayed by its countdown. Reconciliation is the one
recovery of lost run messages, retries included: a lost retry is sent again once (not once by
the sweep and once more by reconciliation, as when both resent waiting runs), never as a
missed tick; a retry still waiting in Redis, or held by a worker until it is due, is not sent
again, unless that worker was killed outright and the retry is long overdue."""

from __future__ import annotations

import json
import signal
import uuid
from datetime import timedelta

import pytest
import redis
from django.conf import settings
from django.utils import timezone

from project.celery import app
from schedules import broker, reconcile, services
from schedules.models import ImportRun
from tasks import maintenance
from tests.conftest import wait_for
from tests.factories import make_import
from tests.reliability import FAST

pytestmark = pytest.mark.django_db(transaction=True)


def client() -> redis.Redis:
    return redis.Redis.from_url(settings.CELERY_BROKER_URL)


def waiting_copies(task_id: str) -> int:
    """Messages with this task id waiting in the default queue."""
    queue = app.conf.task_default_queue
    return sum(
        1
        for key in broker.queue_keys(queue)
        for raw in client().lrange(key, 0, -1)
        if json.loads(raw)["headers"]["id"] == task_id
    )


def held_copies(task_id: str) -> int:
    """Messages with this task id a worker holds, unacknowledged."""
    held = client().hvals(broker.UNACKED_KEY)
    return sum(1 for raw in held if json.loads(raw)[0]["headers"]["id"] == task_id)


def drop_messages(task_id: str) -> None:
    """Remove this task's messages, waiting or held (by a worker gone since)."""
    queue = app.conf.task_default_queue
    for key in broker.queue_keys(queue):
        for raw in client().lrange(key, 0, -1):
            if json.loads(raw)["headers"]["id"] == task_id:
                client().lrem(key, 0, raw)
    for tag, raw in client().hgetall(broker.UNACKED_KEY).items():
        if json.loads(raw)[0]["headers"]["id"] == task_id:
            client().hdel(broker.UNACKED_KEY, tag)
            client().zrem(broker.UNACKED_INDEX_KEY, tag)


def retrying_run(owner, *, countdown_ended_s: float) -> ImportRun:
    """A scheduled run whose first attempt failed; its retry's countdown ended that long ago
    (services.mark_retrying counts the run as touched until then)."""
    imp = make_import(owner, "http://127.0.0.1/p.csv", catchup="skip", max_retries=3)
    now = timezone.now()
    return ImportRun.objects.create(
        scheduled_import=imp,
        trigger=ImportRun.Trigger.SCHEDULE,
        scheduled_for=now - timedelta(minutes=10),
        queued_at=now - timedelta(minutes=10),
        status=ImportRun.Status.RETRYING,
        attempts=1,
        heartbeat_at=now - timedelta(seconds=countdown_ended_s),
        celery_task_id=str(uuid.uuid4()),
    )


def test_a_lost_retry_is_sent_again_once_and_not_as_a_missed_tick(alice):
    # Given a retrying run whose retry message is in no queue and held by no worker (Redis
    # restarted empty during its countdown), its countdown over for longer than the grace period
    run = retrying_run(alice, countdown_ended_s=300)
    try:
        # When beat runs both maintenance jobs, pass after pass
        swept = [maintenance.sweep_runs(), maintenance.sweep_runs()]
        first = reconcile.reconcile()
        again = reconcile.reconcile()

        # Then its message is sent again once, by reconciliation alone
        assert [sweep["recovered"] for sweep in swept] == [0, 0]
        assert (first["resent"], again["resent"]) == (1, 0)
        assert waiting_copies(run.celery_task_id) == 1
        # And a retry is an attempt of a run that started: no missed tick, not skipped
        run.refresh_from_db()
        assert (run.status, run.trigger, run.attempts) == ("retrying", "schedule", 1)
        assert first["lost_ticks"] == 0
        assert run.scheduled_import.missed_ticks == 0

        # When a later pass finds the run untouched again, its message waiting in Redis
        later = reconcile.reconcile(now=timezone.now() + timedelta(minutes=30))

        # Then the waiting message is not sent again
        assert later["resent"] == 0
        assert waiting_copies(run.celery_task_id) == 1
    finally:
        drop_messages(run.celery_task_id)


def test_a_retry_waiting_for_its_countdown_in_redis_is_not_sent_again(alice):
    # Given a retrying run whose retry message waits in Redis, due in ten minutes
    run = retrying_run(alice, countdown_ended_s=-600)
    args, kwargs, _ = services.run_message(run)
    app.send_task(
        services.EXECUTE_RUN, args=args, kwargs=kwargs, task_id=run.celery_task_id, countdown=600
    )
    try:
        # When reconciliation runs long after the countdown, the message still there
        result = reconcile.reconcile(now=timezone.now() + timedelta(hours=1))

        # Then it is not sent again
        assert result["resent"] == 0
        assert waiting_copies(run.celery_task_id) == 1
    finally:
        drop_messages(run.celery_task_id)


@pytest.mark.processes
def test_a_retry_held_by_a_live_worker_is_left_and_one_held_by_a_killed_worker_comes_back(
    alice, processes
):
    # Given a worker holding a retrying run's retry, due in ten minutes (a message with an ETA
    # is taken at once and kept, unacknowledged, until it is due)
    run = retrying_run(alice, countdown_ended_s=-600)
    worker = processes.start("worker", **FAST)
    args, kwargs, _ = services.run_message(run)
    app.send_task(
        services.EXECUTE_RUN, args=args, kwargs=kwargs, task_id=run.celery_task_id, countdown=600
    )
    wait_for(
        lambda: held_copies(run.celery_task_id) == 1 and waiting_copies(run.celery_task_id) == 0,
        30,
        what="the worker to take the retry\n" + processes.logs(),
    )
    try:
        # When reconciliation runs after the countdown, the worker still holding the message
        result = reconcile.reconcile(now=timezone.now() + timedelta(minutes=20))

        # Then the held message is not sent again
        assert result["resent"] == 0
        assert waiting_copies(run.celery_task_id) == 0

        # When the worker is killed outright (Redis keeps its message for the visibility
        # timeout, hours), and reconciliation runs STALE_QUEUED_SECONDS after the retry was due
        processes.stop(worker, sig=signal.SIGKILL)
        assert held_copies(run.celery_task_id) == 1
        overdue = timedelta(seconds=600 + settings.STALE_QUEUED_SECONDS + 60)
        result = reconcile.reconcile(now=timezone.now() + overdue)

        # Then the retry is sent again, once
        assert result["resent"] == 1
        assert waiting_copies(run.celery_task_id) == 1
    finally:
        drop_messages(run.celery_task_id)
