"""A request the database could not serve (no free connection, away, read-only) is answered 503
in words and logged once, at WARNING, with the server's reason.

Regression (clients hunt): Django logged each such 503 again as an ERROR, "Service Unavailable:
/api/v1/imports/", with no reason: at a server out of connections, 6,634 of them in 40 s, each
an ERROR for whoever alerts on them, beside the line that said why.
"""

import logging

import pytest

from tests.test_the_api_says_503_while_the_database_refuses_connections import (
    alices_client_where_the_database_refuses,
)

pytestmark = pytest.mark.django_db(transaction=True)

REFUSAL = (
    'connection failed: connection to server at "10.0.0.5", port 5432 failed: FATAL:  '
    "remaining connection slots are reserved for roles with the SUPERUSER attribute"
)


def test_a_503_for_a_database_with_no_free_connection_is_logged_once_in_words(
    alice, monkeypatch, caplog
):
    # Given a database with no free connection for the web
    client = alices_client_where_the_database_refuses(alice, monkeypatch, REFUSAL)

    # When alice lists her imports
    with caplog.at_level(logging.INFO, logger="django.request"):
        response = client.get("/api/v1/imports/")
    monkeypatch.undo()

    # Then she is told the database has no free connection
    assert response.status_code == 503
    assert response.json()["detail"].startswith("the database has no free connection now")
    # And the log says it once, at WARNING, with the server's reason
    said = [r for r in caplog.records if r.name == "django.request"]
    assert [(r.levelname, "remaining connection slots" in r.getMessage()) for r in said] == [
        ("WARNING", True)
    ], [r.getMessage() for r in said]
