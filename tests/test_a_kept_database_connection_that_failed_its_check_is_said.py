"""A database connection kept from an earlier request or task that fails Django's check before
it is used again is said in the log, with how long the check took, then replaced
(common.database_backend). Django closed it and opened another without a word: a connection
the network forgot held that check 30 s (tcp_user_timeout), a request, a task or beat's loop
that late, and no log said why."""

import logging

import pytest
from django.db import connection

from tests.reliability import terminate

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_kept_connection_that_fails_its_check_is_said_and_replaced(caplog):
    # Given a connection kept from an earlier request, about to serve the next one
    connection.ensure_connection()
    kept = connection.connection.info.backend_pid
    connection.health_check_done = False

    # When its server side ended meanwhile, and Django checks it first (close_old_connections)
    terminate(kept)
    with caplog.at_level(logging.WARNING, logger="importbeat.database"):
        connection.close_if_health_check_failed()

    # Then the log says so, and the next query is served by a new connection
    [said] = [record.getMessage() for record in caplog.records]
    assert said.startswith("a database connection kept from before failed its check after ")
    assert "s; a new one is opened: " in said
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        assert cursor.fetchone()[0] != kept
