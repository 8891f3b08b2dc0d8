"""A worker or beat whose Redis answers but refuses its user INFO (an ACL user given
`+@all -@dangerous`, INFO among them) says at its start, once, in words, that Redis's memory
policy could not be read: whether it may evict run leases and queued messages is unknown.

Regression (says review): the start note that keeps health's own log line out (so that an
unreachable REDIS_URL is said once, by beat's loop) kept this line out too, and said nothing
in its place: a worker and a beat on such a Redis started without a word, where they had said
it before.
"""

from __future__ import annotations

import time

import pytest
import redis

from project.devservices import free_port
from tests.conftest import wait_for
from tests.reliability import FAST, RedisServer

pytestmark = [pytest.mark.processes, pytest.mark.django_db(transaction=True)]

UNREAD = (
    "Redis's memory policy could not be read: the Redis user is not allowed to run what "
    "importbeat needs: check its ACL"
)


@pytest.fixture
def redis_without_info(tmp_path):
    server = RedisServer(free_port(), tmp_path)
    server.start()
    redis.Redis.from_url(server.url).execute_command(
        "ACL", "SETUSER", "app", "on", ">pw-app-7", "~*", "&*", "+@all", "-@dangerous"
    )
    try:
        yield f"redis://app:pw-app-7@127.0.0.1:{server.port}/0"
    finally:
        server.kill()


@pytest.mark.parametrize("name", ["worker", "beat"])
def test_a_process_on_a_redis_that_refuses_info_says_so_once(redis_without_info, processes, name):
    # (the Redis fixture first: the process stops before its Redis does)
    # Given a worker (or beat) whose broker and REDIS_URL are a Redis that refuses its user INFO
    url = redis_without_info
    processes.start(
        name, **FAST, CELERY_BROKER_URL=url, REDIS_URL=url, CELERY_RESULT_BACKEND=url
    )  # fmt: skip

    # When it starts
    wait_for(lambda: "memory policy" in processes.log_of(name), 60, what=processes.logs())
    time.sleep(2)
    log = processes.log_of(name)

    # Then it says once, in words, that the memory policy could not be read, without the
    # password or redis-py's text
    assert next(line for line in log.splitlines() if "memory policy" in line).endswith(UNREAD)
    assert log.count("memory policy") == 1, log
    assert "pw-app-7" not in log and "no permissions" not in log, log
