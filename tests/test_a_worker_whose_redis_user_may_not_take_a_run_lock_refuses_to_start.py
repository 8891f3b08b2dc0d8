"""A worker whose REDIS_URL names a Redis ACL user that may not take a run lock (PING allowed,
SET and the lock's scripts not) refuses to start, saying so in words.

Before (says hunt), its check was a PING: the worker started, said at most a warning of a Redis
it "cannot reach", and every run it took went back to the queue when its lock was refused.
"""

from __future__ import annotations

import pytest
import redis

from project.devservices import free_port
from tests.reliability import RedisServer
from tests.test_worker_not_started_without_its_database_or_broker import refusal

pytestmark = [pytest.mark.processes, pytest.mark.django_db(transaction=True)]


def test_a_worker_whose_redis_user_may_only_ping_refuses_to_start(processes, tmp_path):
    server = RedisServer(free_port(), tmp_path)
    server.start()
    try:
        # Given a Redis whose user `pinger` may run PING and nothing importbeat needs
        redis.Redis.from_url(server.url).execute_command(
            "ACL", "SETUSER", "pinger", "on", ">pw-pinger-1", "~*", "-@all", "+ping", "+auth",
            "+hello",
        )  # fmt: skip

        # When a worker starts with it as REDIS_URL (the broker elsewhere)
        worker = processes.start(
            "worker", REDIS_URL=f"redis://pinger:pw-pinger-1@127.0.0.1:{server.port}/0"
        )

        # Then it refuses to start, saying why in words, without the password
        said = refusal(processes, worker)
    finally:
        server.kill()
    assert said == (
        f"importbeat worker not started: Redis at 127.0.0.1:{server.port} takes no run lock: "
        "the Redis user is not allowed to run what importbeat needs: check its ACL"
    )
    assert "pw-pinger-1" not in processes.logs()
