"""The start's check of a connection pooler in front of the database (project.database_pooler)
says in words why it could not tell, when the database does not answer.

Before (says hunt), its INFO line was psycopg's text ("whether a connection pooler serves the
database is unknown: connection failed: connection to server at "127.0.0.1", port … failed:
FATAL:  password authentication failed for user "postgres""), the host, user and database named
a second time, before the worker's own refusal in words.
"""

from __future__ import annotations

import pytest

from tests.test_worker_not_started_without_its_database_or_broker import refusal

pytestmark = [pytest.mark.processes]


def test_the_pooler_check_says_why_in_words(processes, refused_port):
    port = refused_port

    # When a worker starts on a database that does not answer
    worker = processes.start("worker", DATABASE_URL=f"postgres://postgres:pw-9@127.0.0.1:{port}/x")
    refusal(processes, worker)

    # Then the pooler check's line says why in words, and names nothing of the server's
    log = processes.log_of("worker")
    lines = [line for line in log.splitlines() if "connection pooler serves" in line]
    assert [line.split("importbeat.database ", 1)[-1] for line in lines] == [
        "whether a connection pooler serves the database is unknown: connection refused"
    ], log
