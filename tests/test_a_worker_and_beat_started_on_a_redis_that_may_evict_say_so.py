"""A worker and beat started on a Redis that may evict keys when full say so, once, and start.

A memory cap with `maxmemory-policy allkeys-lru` (what a managed Redis is often set to) drops
queued runs, run locks and task results without a word when it fills. /health, /metrics and
the dashboard said so; a worker's and beat's logs said nothing, though the worker refuses to
start on a full Redis with a clear line.
"""

from __future__ import annotations

import pytest
import redis

from project.devservices import free_port
from tests.conftest import wait_for
from tests.reliability import FAST, redis_server

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]


def test_a_worker_and_beat_started_on_a_redis_that_may_evict_say_so_and_start(processes, tmp_path):
    with redis_server(free_port(), tmp_path) as server:
        # Given a Redis with a memory cap that evicts keys when full (a cache's setting)
        store = redis.Redis.from_url(server.url)
        store.config_set("maxmemory", "512mb")
        store.config_set("maxmemory-policy", "allkeys-lru")
        env = {"REDIS_URL": server.url, "CELERY_BROKER_URL": server.url, **FAST}
        said = (
            f"Redis at 127.0.0.1:{server.port} may evict keys when it is full (maxmemory-policy "
            "allkeys-lru): queued runs, run locks and task results would be lost without a "
            "word; set maxmemory-policy noeviction"
        )

        # When a worker and beat start on it
        worker = processes.start("worker", **env)
        beat = processes.start("beat", **env)

        # Then each says it, a warning in health's words, and runs all the same
        for name in ("worker", "beat"):
            wait_for(lambda name=name: said in processes.log_of(name), 60, what=processes.logs())
        wait_for(lambda: " ready." in processes.log_of("worker"), 60, what=processes.logs())
        for name in ("worker", "beat"):
            # (the worker's log shows a record twice: Django's console handler and Celery's)
            lines = [line for line in processes.log_of(name).splitlines() if said in line]
            assert 1 <= len(lines) <= 2 and all("WARNING" in line for line in lines), lines
        assert worker.poll() is None and beat.poll() is None, processes.logs()
