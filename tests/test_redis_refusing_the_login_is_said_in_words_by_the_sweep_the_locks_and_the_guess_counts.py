"""The sweep's cursor, a lease's release and /metrics' count of password guesses say a Redis
that refuses the login in words.

Each logged redis-py's text ("the sweep looks from the first waiting notification: invalid
username-password pair or user is disabled.", "lease release failed name=… error=Authentication
required.", "guesses at /metrics not counted, Redis did not answer: …", where Redis did answer;
words3 hunt). A real Redis asking a password, with an ACL user.
"""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest
import redis

from common import redis_client
from project.devservices import free_port
from tests.reliability import redis_server

LOGIN_REFUSED = (
    "the user name or password in its URL is wrong or missing, or that user is disabled in its ACL"
)


def forget_clients() -> None:
    redis_client.client.cache_clear()
    redis_client.client_at.cache_clear()


@pytest.fixture
def refusing(tmp_path, settings):
    """REDIS_URL naming an ACL user with a wrong password."""
    with redis_server(free_port(), tmp_path) as server:
        admin = redis.Redis.from_url(server.url)
        admin.acl_setuser("imp", enabled=True, passwords=["+right"], keys="*", commands=["+@all"])
        admin.config_set("requirepass", "right")
        settings.REDIS_URL = f"redis://imp:wrong@127.0.0.1:{server.port}/0"
        forget_clients()
        try:
            yield f"Redis at 127.0.0.1:{server.port} refuses the login: {LOGIN_REFUSED}"
        finally:
            forget_clients()


def test_each_says_redis_refuses_the_login(refusing, caplog):
    from common.leases import Lease
    from schedules import metrics_guesses, notifications

    request = SimpleNamespace(META={"REMOTE_ADDR": "192.0.2.1"})

    # When the sweep reads its cursor, /metrics counts a guess, and a lease is released
    with caplog.at_level(logging.WARNING):
        notifications._resend_cursor()
        metrics_guesses.guessed_wrong(request, "ops")
        lease = Lease("run:1", 60, "worker")
        lease._lock.local.token = lease.token.encode()  # as if it had been taken
        lease.release()

    # Then each says Redis refuses the login, in words
    said = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert said == [
        f"the sweep looks from the first waiting notification: {refusing}",
        f"guesses at /metrics not counted: {refusing}",
        f"lease release failed name=run:1: {refusing}",
    ], said
