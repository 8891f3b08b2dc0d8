"""What the worker's checks say when the database or the broker cannot be reached reads as
plain words an operator can act on, whatever the failure: where (host and port, never a
password) and why ("connection refused", "timed out", "authentication failed"...), never
psycopg's or kombu's text, quotes, class names and all. Real PostgreSQL and local sockets; the
same words reach `/api/v1/health` and the dashboard (tests/test_health_dependency_down.py,
tests/test_dashboard_health_and_next_runs.py)."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Iterator

import psycopg
import pytest
from django.db import connections

from common import error_words
from common.error_words import CLASS_NAME
from project import worker_checks
from project.celery import app
from project.devservices import free_port

pytestmark = pytest.mark.django_db


def plain(message: str | None) -> str:
    assert message is not None
    assert not CLASS_NAME.search(message), message
    assert not any(c in message for c in "'\"()[]<>"), message
    return message


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never says a word."""
    listener = socket.create_server(("127.0.0.1", 0))
    yield listener.getsockname()[1]
    listener.close()


@pytest.fixture
def redis_asking_for_a_password() -> Iterator[int]:
    """A port that answers every command as a Redis server does to a wrong password."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            with client:
                while client.recv(65536):
                    client.sendall(b"-WRONGPASS invalid username-password pair\r\n")

    threading.Thread(target=serve, daemon=True).start()
    yield listener.getsockname()[1]
    listener.close()


def database_at(monkeypatch, **fields: object) -> None:
    """The worker's database settings with `fields` changed (this test's connection stays)."""
    for name, value in fields.items():
        monkeypatch.setitem(connections["default"].settings_dict, name, value)


def test_a_database_on_a_closed_port_is_refused(monkeypatch, refused_port):
    port = refused_port
    database_at(monkeypatch, HOST="127.0.0.1", PORT=port, NAME="importbeat")

    assert plain(worker_checks.database_problem()) == (
        f"cannot reach the database importbeat at 127.0.0.1:{port}: connection refused"
    )


def test_a_database_that_does_not_answer_timed_out(monkeypatch, silent_port):
    monkeypatch.setattr(worker_checks, "CONNECT_TIMEOUT_SECONDS", 1)
    database_at(monkeypatch, HOST="127.0.0.1", PORT=silent_port, NAME="importbeat")

    assert plain(worker_checks.database_problem()) == (
        f"cannot reach the database importbeat at 127.0.0.1:{silent_port}: timed out"
    )


def test_a_database_host_that_does_not_resolve_is_named(monkeypatch):
    database_at(monkeypatch, HOST="no-such-host.invalid", PORT=5432, NAME="importbeat")

    assert plain(worker_checks.database_problem()) == (
        "cannot reach the database importbeat at no-such-host.invalid:5432: "
        "the host name does not resolve"
    )


def test_a_database_that_does_not_exist_on_the_server_is_named(monkeypatch):
    database_at(monkeypatch, NAME="nowhere")

    problem = plain(worker_checks.database_problem())

    assert problem.startswith("cannot reach the database nowhere at "), problem
    assert problem.endswith(": the database does not exist"), problem


def test_a_database_user_that_does_not_exist_is_named(monkeypatch):
    database_at(monkeypatch, USER="nobody")

    assert plain(worker_checks.database_problem()).endswith(": the database user does not exist")


def test_a_broker_on_a_closed_port_is_refused_and_its_password_not_shown(monkeypatch, refused_port):
    port = refused_port
    monkeypatch.setenv("CELERY_BROKER_URL", f"redis://:broker-secret@127.0.0.1:{port}/0")

    assert plain(worker_checks.broker_problem(app)) == (
        f"cannot reach the broker at 127.0.0.1:{port}: connection refused"
    )


def test_a_broker_that_refuses_the_password_says_so(monkeypatch, redis_asking_for_a_password):
    port = redis_asking_for_a_password
    monkeypatch.setenv("CELERY_BROKER_URL", f"redis://:wrong-secret@127.0.0.1:{port}/0")

    assert plain(worker_checks.broker_problem(app)) == (
        f"the broker at 127.0.0.1:{port} refuses the login: the user name or password in its "
        "URL is wrong or missing, or that user is disabled in its ACL"
    )


def test_a_broker_host_that_does_not_resolve_is_named(monkeypatch):
    monkeypatch.setenv("CELERY_BROKER_URL", "redis://no-such-host.invalid/0")

    assert plain(worker_checks.broker_problem(app)) == (
        "cannot reach the broker at no-such-host.invalid:6379: the host name does not resolve"
    )


@pytest.fixture
def database_taking_no_connections() -> Iterator[str]:
    """A database of this test's whose ALLOW_CONNECTIONS is off, as before a maintenance."""
    name = f"closed_{free_port()}"
    params = connections["default"].get_connection_params()
    with psycopg.connect(**params, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name} ALLOW_CONNECTIONS false")
    yield name
    with psycopg.connect(**params, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE {name}")


def test_a_database_taking_no_connections_says_so(monkeypatch, database_taking_no_connections):
    # (maintenance hunt: it was "the reason is in the log")
    database_at(monkeypatch, NAME=database_taking_no_connections)

    assert plain(worker_checks.database_problem()).endswith(
        ": the database takes no connections now: its ALLOW_CONNECTIONS is off"
    )


def test_a_session_the_server_ended_says_so():
    # Given a session of the worker's that an operator ends (pg_terminate_backend)
    params = connections["default"].get_connection_params()
    with psycopg.connect(**params) as theirs, psycopg.connect(**params) as ours:
        ours.execute("SELECT pg_terminate_backend(%s)", [theirs.info.backend_pid])

        # When it next asks the server, then what failed says the server ended the session
        with pytest.raises(psycopg.OperationalError) as ended:
            theirs.execute("SELECT 1")
    words = error_words.unreachable("the database", ended.value, logging.getLogger(__name__))
    assert plain(words) == (
        "cannot reach the database: the server ended the session: by an operator or at its shutdown"
    )
