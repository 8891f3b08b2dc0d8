"""A worker that cannot reach its database or its broker when it starts exits at once, before it
takes any message, saying in plain words what it cannot reach (host and port, never a password)
and why. (Issue: it printed psycopg's first line, quotes and all, or kombu's text, or an
exception's class name.) The library's own error, which says nothing the words do not, goes to
the log at DEBUG only: beside the words it said the refusal again (words5 hunt)."""

from __future__ import annotations

import pytest
import redis

from common.error_words import CLASS_NAME
from project.devservices import free_port
from tests.reliability import redis_server

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]


def refusal(processes, worker) -> str:
    """The line the worker printed when it refused to start (it must have exited non-zero)."""
    assert worker.wait(60) != 0
    log = processes.logs()
    assert "ready." not in log
    lines = [line for line in log.splitlines() if line.startswith("importbeat worker not started")]
    assert lines, log
    assert not CLASS_NAME.search(lines[0]) and not any(c in lines[0] for c in "'\"()[]<>"), lines
    return lines[0]


def test_a_worker_that_cannot_reach_its_database_says_where_and_why(processes, refused_port):
    port = refused_port

    worker = processes.start(
        "worker", DATABASE_URL=f"postgres://postgres:pw-123@127.0.0.1:{port}/nowhere"
    )

    assert refusal(processes, worker) == (
        "importbeat worker not started: "
        f"cannot reach the database nowhere at 127.0.0.1:{port}: connection refused"
    )
    # ... and the log does not say it again in psycopg's text (at DEBUG only: words5 hunt)
    assert "OperationalError" not in processes.logs()


def test_a_worker_that_cannot_reach_its_broker_says_where_and_why_without_its_password(
    processes,
    refused_port,
):
    port = refused_port

    worker = processes.start(
        "worker", CELERY_BROKER_URL=f"redis://:broker-secret@127.0.0.1:{port}/0"
    )

    line = refusal(processes, worker)
    assert line == (
        f"importbeat worker not started: cannot reach the broker at 127.0.0.1:{port}: "
        "connection refused"
    )
    assert "OperationalError" not in processes.logs()  # (at DEBUG only: words5 hunt)
    assert "broker-secret" not in processes.logs()


def test_a_worker_on_a_full_redis_says_so_where_celery_stopped_with_a_traceback(
    processes, tmp_path
):
    # Given a broker that answers but refuses every write (at its maxmemory, evicting nothing):
    # Celery's start takes a lock in Redis, and stopped on "Unrecoverable error"
    with redis_server(free_port(), tmp_path) as server:
        full = redis.Redis.from_url(server.url)
        full.config_set("maxmemory-policy", "noeviction")
        full.config_set("maxmemory", "1")

        worker = processes.start("worker", CELERY_BROKER_URL=server.url, REDIS_URL=server.url)

        assert refusal(processes, worker) == (
            f"importbeat worker not started: the broker at 127.0.0.1:{server.port} refuses new "
            "messages: Redis is full: it reached its maxmemory and evicts nothing; free memory "
            "or raise maxmemory"
        )
        assert "Unrecoverable error" not in processes.logs()
