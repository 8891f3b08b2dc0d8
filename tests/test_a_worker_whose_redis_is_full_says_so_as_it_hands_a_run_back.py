"""A worker whose Redis of run locks (REDIS_URL) is full (at its maxmemory, evicting nothing)
hands each run it takes back to the queue, and says why: Redis is full, what to do about it.

The lease's SET was refused ("OOM command not allowed when used memory > 'maxmemory'") and the
message's reason said importbeat's Redis "is unreachable", sending an operator to look for an
outage of a server that answered (words4 hunt). A real Redis at maxmemory 1, noeviction.
"""

from __future__ import annotations

import logging

import pytest
import redis
from celery.exceptions import Reject

from common import redis_client
from common.said_once import SaidOnce
from project.devservices import free_port
from schedules.models import ImportRun
from tasks import runner
from tests.bound_task import BoundTask
from tests.factories import make_import
from tests.reliability import redis_server

pytestmark = pytest.mark.django_db

FULL = "Redis is full: it reached its maxmemory and evicts nothing; free memory or raise maxmemory"


@pytest.fixture
def full_redis(tmp_path, settings):
    """REDIS_URL on a Redis of its own that takes no more writes."""
    with redis_server(free_port(), tmp_path) as server:
        settings.REDIS_URL = server.url
        redis_client.client.cache_clear()
        try:
            admin = redis.Redis.from_url(server.url)
            admin.config_set("maxmemory-policy", "noeviction")
            admin.config_set("maxmemory", "1")
            yield server
        finally:
            redis_client.client.cache_clear()


def test_a_run_goes_back_saying_its_redis_is_full(full_redis, alice, monkeypatch, caplog):
    monkeypatch.setattr(runner, "REQUEUE_PAUSE_SECONDS", 0)
    # (what an earlier test's hand-back said is not this one's)
    monkeypatch.setattr(runner, "_handed_back", SaidOnce(), raising=False)
    imp = make_import(alice, "http://127.0.0.1:9/p.csv")
    run = ImportRun.objects.create(scheduled_import=imp, trigger="manual")

    # Given a worker whose Redis is full
    # When the worker takes a run
    with (
        caplog.at_level(logging.WARNING, logger="importbeat.runs"),
        pytest.raises(Reject) as handed_back,
    ):
        runner.execute(run.pk, BoundTask())

    # Then the message goes back to the queue, its reason saying Redis is full, and why
    assert handed_back.value.requeue
    assert handed_back.value.reason == (
        f"importbeat's Redis (REDIS_URL, the run locks) refuses writes: {FULL}; the message goes "
        "back to the queue"
    )
    # And the worker's log says so too
    said = [r.getMessage() for r in caplog.records if r.name == "importbeat.runs"]
    assert said == [
        f"run {run.pk} goes back to the queue: Redis at 127.0.0.1:{full_redis.port} refuses "
        f"writes: {FULL}"
    ]
    # And its owner reads it queued, nothing more
    run.refresh_from_db()
    assert (run.status, run.attempts, run.error_message) == ("queued", 0, "")
