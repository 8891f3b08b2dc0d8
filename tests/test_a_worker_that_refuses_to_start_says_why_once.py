"""A worker that refuses to start (its database or its broker out of reach, a Redis refusing its
login) says why once, in words, and exits non-zero before it takes any message.

Regression (words5 hunt): it said each refusal three times, one line after the other: a
WARNING with the library's text ("(OperationalError: connection failed: connection to server
at …)"), a CRITICAL "worker not started: …", and "importbeat worker not started: …" on
stderr. Real workers started from the Procfile's line.
"""

from __future__ import annotations

import pytest
import redis

from project.devservices import free_port
from tests.reliability import redis_server

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]


def lines_saying(processes, worker, words: str) -> list[str]:
    """The lines of the worker's log that say `words`, once it exited non-zero."""
    assert worker.wait(60) != 0
    log = processes.log_of("worker")
    assert "ready." not in log, log
    return [line for line in log.splitlines() if words in line]


def test_a_database_out_of_reach_is_said_once(processes, refused_port):
    # Given a DATABASE_URL where no server listens
    port = refused_port

    # When a worker starts
    worker = processes.start("worker", DATABASE_URL=f"postgres://postgres:pw@127.0.0.1:{port}/x")

    # Then it says once, in words, that it cannot reach it, and exits
    words = f"cannot reach the database x at 127.0.0.1:{port}: connection refused"
    assert lines_saying(processes, worker, words) == [f"importbeat worker not started: {words}"]
    # ... nothing else saying it did not start
    assert "CRITICAL" not in processes.log_of("worker")


def test_a_broker_out_of_reach_is_said_once(processes, refused_port):
    port = refused_port

    worker = processes.start("worker", CELERY_BROKER_URL=f"redis://127.0.0.1:{port}/0")

    words = f"cannot reach the broker at 127.0.0.1:{port}: connection refused"
    assert lines_saying(processes, worker, words) == [f"importbeat worker not started: {words}"]


def test_a_redis_refusing_the_login_is_said_once(processes, tmp_path):
    # Given REDIS_URL, and so the broker, on a Redis whose password is another
    with redis_server(free_port(), tmp_path) as server:
        redis.Redis.from_url(server.url).config_set("requirepass", "right")
        url = f"redis://:wrong@127.0.0.1:{server.port}/0"

        # When a worker starts
        worker = processes.start("worker", REDIS_URL=url, CELERY_BROKER_URL=url)

        # Then it says once that Redis refuses the login
        said = lines_saying(processes, worker, "refuses the login")
    assert len(said) == 1 and said[0].startswith("importbeat worker not started: "), said
