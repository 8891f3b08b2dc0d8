"""A worker whose REDIS_URL names a Redis at its maxmemory that evicts nothing (noeviction)
refuses to start saying that Redis is full, not that it cannot be reached.

Regression (says review): the start check that takes a run lock read every Redis error as a
Redis it "cannot reach", and a full one's refusal had no words there: "importbeat worker not
started: cannot reach Redis at 127.0.0.1:6380: the reason is in the log", of a Redis that had
answered its PING.
"""

from __future__ import annotations

import pytest
import redis

from project.devservices import free_port
from tests.reliability import RedisServer
from tests.test_worker_not_started_without_its_database_or_broker import refusal

pytestmark = [pytest.mark.processes, pytest.mark.django_db(transaction=True)]


def test_a_worker_on_a_full_redis_says_it_is_full_not_unreachable(processes, tmp_path):
    server = RedisServer(free_port(), tmp_path)
    server.start()
    try:
        # Given a Redis for the run locks (the broker elsewhere) that is full and evicts nothing
        full = redis.Redis.from_url(server.url)
        full.config_set("maxmemory-policy", "noeviction")
        full.config_set("maxmemory", 1)
        with pytest.raises(redis.exceptions.OutOfMemoryError):
            full.set("a-key", "a value")

        # When a worker starts with it as REDIS_URL
        worker = processes.start("worker", REDIS_URL=server.url)

        # Then it refuses to start, saying that Redis is full, in words
        said = refusal(processes, worker)
        # and leaves no key there
        left = full.keys("*")
    finally:
        server.kill()
    assert said == (
        f"importbeat worker not started: Redis at 127.0.0.1:{server.port} takes no run lock: "
        "Redis is full: it reached its maxmemory and evicts nothing; free memory or raise "
        "maxmemory"
    )
    assert left == []
