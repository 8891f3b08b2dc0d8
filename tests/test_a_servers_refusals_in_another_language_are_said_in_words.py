"""A server whose messages are in another language (`lc_messages` for importbeat's role or
database, or the whole server's: a German operator's server says "zu viele Verbindungen von
Rolle »app«"): common/error_words.py knew PostgreSQL's English phrases only, so a session the
server ended, a role at its connection limit, a database that does not exist each read "the
reason is in the log". A session's errors are now said by their SQLSTATE; a refused
connection's, which libpq gives as text only, by the server's message catalogue
(common.server_languages), else in the server's own words.
"""

from __future__ import annotations

import psycopg
import pytest

from common.error_words import reason
from tests.server_settings_support import a_server_in_german
from tests.test_worker_not_started_without_its_database_or_broker import refusal


def test_a_session_a_german_server_ended_is_said_in_words():
    with a_server_in_german() as server:
        # Given a session of importbeat's role on a server that speaks German
        session = psycopg.connect(server.url.replace("postgres@", "app@"), autocommit=True)
        try:
            # When an operator ends it
            with psycopg.connect(server.url, autocommit=True) as operator:
                operator.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'app'"
                )
            with pytest.raises(psycopg.Error) as ended:
                session.execute("SELECT 1")
        finally:
            session.close()

    # Then it is said in words, by its code
    assert "Administrators" in str(ended.value)
    assert reason(ended.value) == "the server ended the session: by an operator or at its shutdown"


@pytest.mark.processes
def test_a_worker_refused_by_a_german_server_says_why_in_words(processes):
    with a_server_in_german() as server:
        # Given importbeat's role at its connection limit on a server that speaks German
        with psycopg.connect(server.url, autocommit=True) as operator:
            operator.execute("ALTER ROLE app CONNECTION LIMIT 0")

        # When a worker starts on it
        worker = processes.start("worker", DATABASE_URL=server.url.replace("postgres@", "app@"))

        # Then it refuses to start, saying why as of an English server
        assert refusal(processes, worker) == (
            f"importbeat worker not started: cannot reach the database importbeat at "
            f"127.0.0.1:{server.port}: the database user has no free connection: it is at its "
            "CONNECTION LIMIT"
        )
