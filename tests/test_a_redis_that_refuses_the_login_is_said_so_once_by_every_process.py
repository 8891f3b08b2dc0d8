"""A Redis that answers and refuses the login (requirepass with a wrong or no password, an ACL
user with a wrong password) is said as such, in words, once, by every process: the worker's
start, `/health` for staff and its log, beat and Flower.

It was said "cannot reach the broker at …: authentication failed", which sends an operator to
the network when Redis answered; the worker said it twice (for the broker, then for REDIS_URL,
the same server), its log quoted redis-py's class and text ("AuthenticationError: invalid
username-password pair or user is disabled."), and `/health` logged five lines for it, one per
check that reads Redis (health3 hunt). Real Redis servers that ask a password.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator

import pytest
import redis
from rest_framework.test import APIClient

from common.error_words import CLASS_NAME
from project.devservices import free_port
from tests.reliability import RedisServer, redis_server

pytestmark = pytest.mark.django_db(transaction=True)

LOGIN_REFUSED = (
    "the user name or password in its URL is wrong or missing, or that user is disabled in its ACL"
)
# redis-py's and Redis's own words, which no reader is shown.
LIBRARY_TEXT = re.compile(r"AuthenticationError|WRONGPASS|NOAUTH|username-password pair|Error:")


@pytest.fixture
def guarded(tmp_path) -> Iterator[RedisServer]:
    """A Redis asking the password `right`, with an ACL user `imp` whose password is `right`."""
    with redis_server(free_port(), tmp_path) as server:
        admin = redis.Redis.from_url(server.url)
        admin.acl_setuser("imp", enabled=True, passwords=["+right"], keys="*", commands=["+@all"])
        admin.config_set("requirepass", "right")
        yield server


def at(server: RedisServer, login: str) -> str:
    return f"redis://{login}127.0.0.1:{server.port}/0"


def refuses(what: str, server: RedisServer) -> str:
    return f"{what} at 127.0.0.1:{server.port} refuses the login: {LOGIN_REFUSED}"


@pytest.mark.processes
def test_a_worker_refuses_to_start_in_one_line(processes, guarded):
    # Given REDIS_URL, and so the broker, with a wrong password
    url = at(guarded, ":wrong@")

    # When a worker starts
    worker = processes.start("worker", REDIS_URL=url, CELERY_BROKER_URL=url)

    # Then it exits saying once, in words, that Redis refuses the login
    assert worker.wait(60) != 0
    log = processes.logs()
    said = [line for line in log.splitlines() if line.startswith("importbeat worker not started")]
    assert said == [f"importbeat worker not started: {refuses('the broker', guarded)}"], log
    assert "cannot reach" not in log and not LIBRARY_TEXT.search(log), log
    assert not any(c in said[0] for c in "'\"()[]<>"), said  # no library's quoting either
    assert "wrong" not in log.replace(LOGIN_REFUSED, "")


def test_redis_of_run_locks_refusing_an_acl_users_password_is_said_so(guarded, settings):
    # Given REDIS_URL naming an ACL user with a wrong password
    from common import redis_client
    from project import worker_checks

    settings.REDIS_URL = at(guarded, "imp:wrong@")
    redis_client.client.cache_clear()
    try:
        # When a worker checks the Redis of its run locks
        words = worker_checks.redis_problem()
    finally:
        redis_client.client.cache_clear()

    # Then it says Redis refuses the login
    assert words == refuses("Redis", guarded)


def test_health_tells_staff_in_words_and_logs_it_once(guarded, settings, caplog, monkeypatch):
    # Given REDIS_URL and the broker on a Redis that asks a password none is given
    from django.contrib.auth import get_user_model
    from knox.models import AuthToken

    url = at(guarded, "")
    settings.REDIS_URL = url
    monkeypatch.setenv("CELERY_BROKER_URL", url)  # what Celery's conf reads first
    ops = get_user_model().objects.create_user("ops", is_staff=True)
    _, token = AuthToken.objects.create(user=ops, expiry=None)

    # When staff ask health
    with caplog.at_level(logging.WARNING, logger="schedules.api.health"):
        answer = APIClient().get("/api/v1/health", HTTP_AUTHORIZATION=f"Token {token}")

    # Then the broker is down, said in words, and the log says it once
    assert answer.status_code == 503
    assert answer.json()["checks"]["broker"]["error"] == refuses("the broker", guarded)
    assert "cannot reach" not in answer.content.decode(), answer.json()
    assert not LIBRARY_TEXT.search(answer.content.decode()), answer.json()
    said = [r.getMessage() for r in caplog.records if r.name == "schedules.api.health"]
    assert said == [refuses("the broker", guarded)], said


def test_beat_says_redis_refuses_the_login(guarded, caplog):
    # Given beat's words for its Redis, and that Redis refusing an ACL user's wrong password
    from project.beat import RedisAway

    away = RedisAway(f"Redis at 127.0.0.1:{guarded.port}")
    with pytest.raises(redis.RedisError) as refused:
        redis.Redis.from_url(at(guarded, "imp:wrong@")).ping()

    # When a loop of beat meets it
    with caplog.at_level(logging.WARNING, logger="project.beat"):
        away.loop_begins()
        away.met(refused.value)

    # Then beat says Redis refuses the login
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 1 and said[0].startswith(refuses("Redis", guarded) + ";"), said


def test_flower_says_the_broker_refuses_the_login(guarded, monkeypatch):
    # Given Flower's broker on a Redis that refuses its password
    from kombu import Connection

    from common.flower_words import FlowerWords

    url = at(guarded, ":wrong@")
    monkeypatch.setenv("CELERY_BROKER_URL", url)  # what Celery's conf reads first
    with pytest.raises(Exception) as refused, Connection(url) as broker:
        broker.ensure_connection(max_retries=1)
        broker.default_channel.client.ping()

    # When Flower logs that it could not read the workers' events
    record = logging.LogRecord(
        "flower.events", logging.ERROR, "", 0, "Failed to capture events: '%s'", (refused.value,),
        None,
    )  # fmt: skip
    FlowerWords().filter(record)

    # Then it says the broker refuses the login, in words
    words = record.getMessage()
    assert words == f"Flower cannot see the workers: {refuses('the broker', guarded)}"
    assert not CLASS_NAME.search(words)
