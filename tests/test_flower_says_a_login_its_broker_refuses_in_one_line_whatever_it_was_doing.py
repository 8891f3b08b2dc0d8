"""Flower says a broker that refuses the login in one line, folded a minute, whichever of its
operations met it: reading the workers' events, turning them on, or asking the workers how they
are.

Each operation had its own words for the one refusal ("Flower cannot read the workers' events:
the broker at … refuses: …", "Flower cannot turn the workers' events on: …", "Flower cannot ask
the workers how they are: …"), each folded apart: up to three lines a minute for one wrong
password, and "refuses:" where every other process says "refuses the login" (words3 hunt).
A real Redis asking a password; Flower's own log lines, through its filter.
"""

from __future__ import annotations

import logging

import pytest
import redis
from kombu import Connection

from common import said_once
from common.flower_words import FlowerWords
from project.devservices import free_port
from tests.reliability import redis_server

LOGIN_REFUSED = (
    "the user name or password in its URL is wrong or missing, or that user is disabled in its ACL"
)


@pytest.fixture
def refused(tmp_path, monkeypatch):
    """Flower's broker on a Redis refusing its password: the errors kombu and redis-py raise."""
    with redis_server(free_port(), tmp_path) as server:
        redis.Redis.from_url(server.url).config_set("requirepass", "right")
        url = f"redis://:wrong@127.0.0.1:{server.port}/0"
        monkeypatch.setenv("CELERY_BROKER_URL", url)  # what Celery's conf reads first
        with pytest.raises(Exception) as by_kombu, Connection(url) as broker:
            broker.ensure_connection(max_retries=1)
            broker.default_channel.client.ping()
        with pytest.raises(redis.RedisError) as by_redis:
            redis.Redis.from_url(url).publish("celery", "x")
        yield server.port, by_kombu.value, by_redis.value


def flower_lines(error_of_kombu, error_of_redis) -> list[logging.LogRecord]:
    """What Flower logs for each of its operations (flower/events.py, flower/inspector.py)."""

    def line(name: str, level: int, message: str, *args) -> logging.LogRecord:
        return logging.LogRecord(name, level, "", 0, message, args, None)

    return [
        line(
            "flower.events", logging.ERROR,
            "Failed to capture events: '%s', trying again in %s seconds.", error_of_kombu, 1,
        ),
        line("flower.events", logging.WARNING, "Failed to enable events: %s", error_of_redis),
        *(
            line(
                "flower.inspector", logging.WARNING, "Inspect method %s failed: %s", method,
                error_of_kombu,
            )
            for method in ("stats", "active_queues", "registered", "conf")
        ),
    ]  # fmt: skip


def test_one_refusal_is_one_line_a_minute(refused, monkeypatch):
    port, by_kombu, by_redis = refused
    now = [1000.0]
    monkeypatch.setattr(said_once.time, "monotonic", lambda: now[0])
    words = FlowerWords()  # one filter on both of Flower's loggers (flower_words.install)

    # When Flower meets the refusal reading events, turning them on and asking the workers
    kept = [record for record in flower_lines(by_kombu, by_redis) if words.filter(record)]

    # Then it says once that the broker refuses the login
    refuses = f"the broker at 127.0.0.1:{port} refuses the login: {LOGIN_REFUSED}"
    assert [record.getMessage() for record in kept] == [f"Flower cannot see the workers: {refuses}"]

    # And when it meets it again in every operation a minute later
    now[0] += 61
    again = [record for record in flower_lines(by_kombu, by_redis) if words.filter(record)]

    # Then it says it once more, with how often it was met
    assert [record.getMessage() for record in again] == [
        f"Flower cannot see the workers: {refuses} (met 5 times more in the last 61 s)"
    ]
