"""What a PgBouncer in front of the database answers when it cannot serve a connection is said
in words, as PostgreSQL's own refusals are (common/error_words.py): its max_client_conn read
"the reason is in the log", its query_wait_timeout (a pool with no free server session, or one
that cannot reach PostgreSQL) "timed out", and a database its [databases] section does not
name "the reason is in the log". A real PgBouncer; the words the worker's start-up check, the
health check and a run's retry say."""

from __future__ import annotations

import contextlib

import psycopg
import pytest

from common.error_words import out_of_connections, reason
from tests.pgbouncer_support import pgbouncer

pytestmark = [pytest.mark.django_db(transaction=True)]


def refusal(url: str, **options: object) -> psycopg.Error:
    """The error a new client meets at `url`, its first statement included."""
    try:
        with psycopg.connect(url, autocommit=True, **options) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as error:
        return error
    raise AssertionError(f"{url} served a client")


def test_a_pgbouncer_at_its_max_client_conn_is_said_to_take_no_more_clients():
    # Given a PgBouncer that takes one client, and one connected
    with pgbouncer("transaction", max_client_conn=1) as pool, psycopg.connect(pool.url):
        # When another client connects
        error = refusal(pool.url)

    # Then it is said, as a database out of connections is
    assert (
        reason(error) == "the connection pooler takes no more clients: it is at its max_client_conn"
    )
    assert out_of_connections(error)


def test_a_pgbouncer_with_no_free_server_session_in_time_says_its_query_wait_timeout():
    # Given a PgBouncer with one server session, held by a client's open transaction
    with (
        pgbouncer("transaction", default_pool_size=1, query_wait_timeout=1) as pool,
        contextlib.closing(psycopg.connect(pool.url)) as holder,
    ):
        holder.execute("SELECT 1")  # (a transaction left open)

        # When another client asks for a statement
        error = refusal(pool.url)

    # Then the words name the pool's wait and what to look at
    assert reason(error) == (
        "the connection pooler had no server connection for it in time (its query_wait_timeout):"
        " its pool is too small, or it cannot reach PostgreSQL"
    )


def test_a_database_pgbouncer_does_not_know_is_said_so():
    with pgbouncer("transaction") as pool:
        error = refusal(pool.url.rsplit("/", 1)[0] + "/reports")

    assert reason(error) == (
        "the connection pooler has no such database: check its [databases] section"
    )
