"""A server older than 14 is refused in importbeat's words, on every new connection (compat
hunt, review): a real PostgreSQL 13 was refused with Django's NotSupportedError ("PostgreSQL 14
or later is required (found 13.23)", a 45-line traceback), never with the words README and
SPEC promise ("PostgreSQL 13 is not supported: importbeat needs PostgreSQL 14 or newer ..."):
Django checks the version itself, once a process, before `connection_created` is sent. And the
project's check read the version cached from the process's first connection: after a failover
to an older server, a long-lived worker's new connections were taken.
"""

import psycopg
import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.db.backends.base import base as backend_base

REAL_INFO = psycopg.Connection.info
WORDS = "PostgreSQL 13 is not supported: importbeat needs PostgreSQL 14 or newer"


class Thirteen:
    """A connection's info as a PostgreSQL 13.23 gives it."""

    server_version = 130023

    def __init__(self, real) -> None:
        self._real = real

    def __getattr__(self, name):
        return getattr(self._real, name)


def servers_are_thirteen(monkeypatch) -> None:
    monkeypatch.setattr(
        psycopg.Connection, "info", property(lambda self: Thirteen(REAL_INFO.fget(self)))
    )


@pytest.mark.django_db(transaction=True)
def test_a_process_meeting_postgresql_13_says_importbeats_words(monkeypatch):
    # Given a fresh process (Django has not checked this alias yet) and a server that is 13
    connection.close()
    monkeypatch.setattr(backend_base, "RAN_DB_VERSION_CHECK", set())
    connection.__dict__.pop("pg_version", None)  # (Django reads it from the new connection)
    servers_are_thirteen(monkeypatch)

    # When it connects, it is refused in the words the README promises, and closed
    try:
        with pytest.raises(ImproperlyConfigured) as refused:
            connection.ensure_connection()
        assert str(refused.value).startswith(WORDS)
        assert connection.connection is None
    finally:
        monkeypatch.undo()
        connection.close()

    # And the suite's own server still answers afterwards
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        assert cursor.fetchone() == (1,)


@pytest.mark.django_db(transaction=True)
def test_a_worker_whose_database_fails_over_to_postgresql_13_refuses_it(monkeypatch):
    # Given a worker that has connected once to a supported server
    connection.ensure_connection()
    assert connection.pg_version >= 140000

    # When its database fails over to a PostgreSQL 13 and it connects again
    connection.close()
    servers_are_thirteen(monkeypatch)

    # Then the new connection is refused in importbeat's words, and closed
    try:
        with pytest.raises(ImproperlyConfigured, match=WORDS):
            connection.ensure_connection()
        assert connection.connection is None
    finally:
        monkeypatch.undo()
        connection.close()
