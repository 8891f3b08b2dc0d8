"""A broker that accepts connections and then never answers (a hung server, a firewall that
drops packets after the handshake, another service on that port) is reported as timed out by
`/api/v1/health` and by the worker's start-up check. Before, both waited on the socket for good:
the health check held its web worker, and a worker hung at its start instead of saying why."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator

import pytest

from project import worker_checks
from project.celery import app
from schedules.api import health

pytestmark = pytest.mark.django_db

# Well above the checks' own bounds (HEALTH_BROKER_TIMEOUT 2 s; the worker's 3 s, twice).
PATIENCE_SECONDS = 30


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never says a word."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    yield listener.getsockname()[1]
    listener.close()
    for connection in accepted:
        connection.close()


def answer_within(check: Callable[[], object], seconds: float) -> object:
    """What `check` returns, failing the test if it has not returned after `seconds`."""
    answers: list[object] = []
    thread = threading.Thread(target=lambda: answers.append(check()), daemon=True)
    thread.start()
    thread.join(seconds)
    if not answers:
        pytest.fail(f"the check still waits for the broker after {seconds} s")
    return answers[0]


@pytest.mark.parametrize("scheme", ["redis://", "amqp://guest:guest@"])
def test_the_health_check_says_a_silent_broker_timed_out(monkeypatch, silent_port, scheme):
    # Given a broker URL whose server never answers
    monkeypatch.setenv("CELERY_BROKER_URL", f"{scheme}127.0.0.1:{silent_port}/")

    # When the health endpoint checks the broker
    answer = answer_within(health.check_broker, PATIENCE_SECONDS)

    # Then it answers in time: the broker is down, and why
    assert answer == {
        "ok": False,
        "error": f"cannot reach the broker at 127.0.0.1:{silent_port}: timed out",
    }


@pytest.mark.parametrize("scheme", ["redis://", "amqp://guest:guest@"])
def test_a_worker_says_a_silent_broker_timed_out(monkeypatch, silent_port, scheme):
    # Given a broker URL whose server never answers
    monkeypatch.setenv("CELERY_BROKER_URL", f"{scheme}127.0.0.1:{silent_port}/")

    # When a worker checks its broker before it starts
    problem = answer_within(lambda: worker_checks.broker_problem(app), PATIENCE_SECONDS)

    # Then it has a reason not to start, in words
    assert problem == f"cannot reach the broker at 127.0.0.1:{silent_port}: timed out"
