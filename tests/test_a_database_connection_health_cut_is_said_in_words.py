"""A kept database connection that stopped answering, cut by `/health`'s bound, is said in
words in the database backend's log.

Django checks a kept connection (CONN_HEALTH_CHECKS) before its first use in a request; when the
database stops answering, `/health` cuts that check after its bound by shutting the socket down,
and the backend logged psycopg's text for it: "consuming input failed: server closed the
connection unexpectedly This probably means the server terminated abnormally before or while
processing the request", which sent an operator to a server crash that was none (health3 hunt).
In-process, through a real relay that falls silent.
"""

from __future__ import annotations

import logging

import pytest
from rest_framework.test import APIClient

from tests.conftest import wait_for
from tests.test_health_answers_within_seconds_whatever_its_dependencies_do import (
    Silent,
    other_sessions,
)

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_kept_connection_cut_by_health_is_said_in_words(caplog):
    # Given this thread's database connection kept through a relay, used once by health
    from django.db import connection

    saved = connection.settings_dict
    host, port = saved["HOST"] or "/var/run/postgresql", int(saved["PORT"] or 5432)
    relay = Silent(relaying=f"{host}/.s.PGSQL.{port}" if host.startswith("/") else (host, port))
    before = frozenset(other_sessions())
    connection.close()
    connection.settings_dict = {
        **saved, "HOST": "127.0.0.1", "PORT": str(relay.port), "CONN_MAX_AGE": 600,
        "CONN_HEALTH_CHECKS": True,
    }  # fmt: skip
    client = APIClient()
    try:
        assert client.get("/api/v1/health").json()["checks"]["database"] == {"ok": True}

        # When the database stops answering on it, and health asks again
        relay.hang()
        # (what Django's request_started does, which the test client leaves out)
        connection.health_check_done = False
        with caplog.at_level(logging.WARNING, logger="importbeat.database"):
            answer = client.get("/api/v1/health")
    finally:
        connection.close()
        connection.settings_dict = saved
        relay.close()
        wait_for(lambda: not other_sessions(before), 20, what="the relayed sessions to end")

    # Then health is down, and the backend says in words that health cut the connection
    assert answer.json()["checks"]["database"] == {"ok": False}
    said = [r.getMessage() for r in caplog.records if r.name == "importbeat.database"]
    assert len(said) == 1, said
    assert said[0].startswith("a database connection kept from before did not answer its check")
    assert said[0].endswith("and /health cut it; a new one is opened"), said
