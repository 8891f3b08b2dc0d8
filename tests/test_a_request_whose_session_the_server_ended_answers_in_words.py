"""A request whose database session the server ends in its transaction (a restart, an
operator's pg_terminate_backend) answers 503 in words, as a database away does (maint hunt).

PostgreSQL says it ended the session before the socket closes, and psycopg, in a transaction,
still holds the session as sound: the API answered 500 "Internal server error.", said as a bug,
and a maintenance pass failed with a traceback. The server's word counts now
(fresh_connection.connection_lost).
"""

from __future__ import annotations

import json

import psycopg
import pytest
from django.db import OperationalError, connection, transaction
from django.test import RequestFactory

from schedules.api.middleware import DATABASE_AWAY, JsonErrorsMiddleware
from schedules.models import ScheduledImport

pytestmark = pytest.mark.django_db(transaction=True)


def ended_by_the_server_in_a_transaction() -> OperationalError:
    """What a request's statement raises when the server has ended its session meanwhile."""
    with pytest.raises(OperationalError) as failed, transaction.atomic():
        ScheduledImport.objects.count()
        with psycopg.connect(**connection.get_connection_params(), autocommit=True) as ops:
            ops.execute("SELECT pg_terminate_backend(%s)", [connection.connection.info.backend_pid])
        ScheduledImport.objects.count()
    return failed.value


def test_an_api_request_whose_session_the_server_ended_answers_503_in_words():
    # Given a request's statement that met its session ended by the server
    error = ended_by_the_server_in_a_transaction()

    # When the API answers it
    request = RequestFactory().get("/api/v1/imports/")
    answer = JsonErrorsMiddleware(lambda request: None).process_exception(request, error)

    # Then it says the database cannot be reached now, to try again, not a server error
    assert answer is not None and answer.status_code == 503
    assert json.loads(answer.content) == {"detail": DATABASE_AWAY}
    assert answer["Retry-After"] == "5"
