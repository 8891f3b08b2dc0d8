"""A worker, beat, `run_import` or `migrate` behind a pool in transaction mode refuses to start.

A pool in transaction mode (PgBouncer's `pool_mode = transaction`, the default of many managed
poolers) gives each transaction of a client whichever server session is free. A run's staging
tables (tasks/engine/tables.py) live in its session from one transaction to the next, and the
worker's and beat's session settings (project/worker_connections.py, project/beat.py) are set
once per connection: behind such a pool a worker took runs and failed them half way, as "an
unexpected error in importbeat" ("relation importbeat_raw does not exist" in its log), or ran
them by luck when the pool happened to give it the same session again; its session settings
landed on whichever session answered, for whichever client came next.

`manage.py run_import` runs the same engine in its own process: behind such a pool it failed
its run the same way, and left its staging tables on whichever server session it last had, for
the next client of the pool to trip on ("relation importbeat_raw already exists"). `migrate`
sets its lock_timeout for the session: behind such a pool it landed on one server session (a
web's, next) and the migrations ran without it on others.

So at start (Celery's `worker_init` and `beat_init`, before anything is consumed or sent; a
command's first connection) the process asks: does a pooler answer (the backend's id it was
given at login differs from the server's `pg_backend_pid()`: a pooler gives its own), and does
it hand a session that one client still holds to another (transaction mode)? Two connections,
once. DATABASE_POOL_MODE declares the web's pool (project/settings.py, which refuses these
processes when it is declared for them).

Behind a pooler in session mode the worker runs as on PostgreSQL itself, but for one thing: the
backend id psycopg holds (`info.backend_pid`, from the login) is the pooler's, not the server
session's. The words of a run that timed out waiting for a lock name whose session held it by
asking PostgreSQL whom the run's session waited for (tasks/lock_waits.py): asked for the
pooler's id, they found no one and said only "the run exceeded its 3s time limit". So a pool
process behind a pooler notes its server session's id on each new connection
(`connection.server_pid`); on PostgreSQL itself nothing is asked.
"""

from __future__ import annotations

import logging
import os
import select
import sys
import time
from contextlib import closing
from typing import Any

from celery.signals import beat_init, worker_init, worker_process_init
from django.db.backends.signals import connection_created

from common import error_words
from common.application_name import application_name

logger = logging.getLogger("importbeat.database")

# What a pooler serves (pooling()): its pool mode, "" for PostgreSQL itself, None unknown.
SESSION, TRANSACTION = "session", "transaction"

# This worker's finding at its start, inherited by its pool processes.
_found: str | None = None


def pooling() -> str | None:
    """What this process's DATABASE_URL is: TRANSACTION for a pool that hands a session from
    client to client between transactions, SESSION for a pooler that keeps a client's session,
    "" for PostgreSQL itself; None when it could not be asked (the start-up checks say why)."""
    import psycopg
    from django.db import connection

    params = connection.get_connection_params()
    try:
        with closing(connection.get_new_connection(params)) as first:
            first.autocommit = True
            pid = _server_pid(first)
            if pid == first.info.backend_pid:
                return ""  # PostgreSQL itself: the id given at login is its process's
            with closing(connection.get_new_connection(params)) as second:
                second.autocommit = True
                # A pool in session mode keeps `first`'s session for it while it is connected:
                # `second` never gets it, and `first` never another. One in transaction mode
                # hands out its free sessions last used first (PgBouncer's default: `second`
                # gets first's at once) or in turn (server_round_robin): with two sessions open,
                # `second` got the other one and `first` its own back, every time, and the pool
                # passed for one in session mode (review1). So `second` asks once, then twice,
                # between `first`'s questions: in turn among n sessions, `first` is given its
                # own back 2 and 5 questions later only if n divides both, none but n = 1 (where
                # `second` is given it at once).
                # A pool in session mode with no session free keeps `second` waiting in its
                # queue, its query_wait_timeout (120 s by default), a start held as long
                # (review1: 15.3 s with 15); one in transaction mode gives `second` a session
                # at once, `first`'s idle one if no other, unless its sessions are all busy
                # (a web's exports): then `first` waits too, where a session pool answers it at
                # once on the session it keeps (review2: a pool of one session another client
                # took again was found a session pool after 2.5 s, and a worker started on it).
                if (answer := _server_pid(second, within=FIRST_ANSWER_SECONDS)) is None:
                    again = _server_pid(first, within=FIRST_ANSWER_SECONDS)
                    return SESSION if again == pid else TRANSACTION
                if answer == pid or _server_pid(first) != pid:
                    return TRANSACTION
                if any(_server_pid(second) == pid for _turn in range(2)):
                    return TRANSACTION
                return SESSION if _server_pid(first) == pid else TRANSACTION
    except psycopg.Error as error:
        # In words: psycopg's text named the host, the user and the database, at every start
        # on a database the process's own check then refused in words (says hunt).
        logger.info(
            "whether a connection pooler serves the database is unknown: %s",
            error_words.reason(error),
        )
        logger.debug("the pooler check's error: %s", error_words.log_text(error))
        return None


# How long `second`'s first question may wait for a server session (pooling()).
FIRST_ANSWER_SECONDS = 2.0


def _server_pid(conn: Any, within: float | None = None) -> int | None:
    """The id of the server session that answers `conn` now; None when none answered `within`
    seconds. Asked through libpq's asynchronous calls: a pooler ignores a cancel of a client
    still waiting for a session, so only leaving it ends the wait (pooling() then closes it).
    A simple query, never prepared: a statement prepared on one server session is unknown to
    the next."""
    import psycopg
    from psycopg import pq

    pgconn = conn.pgconn
    pgconn.send_query(b"SELECT pg_backend_pid()")
    deadline = None if within is None else time.monotonic() + within
    while True:
        pgconn.consume_input()
        if not pgconn.is_busy():
            break
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            return None
        select.select([pgconn.socket], [], [], left)
    result, answer = pgconn.get_result(), None
    while pgconn.get_result() is not None:
        pass
    if result is not None and result.status == pq.ExecStatus.TUPLES_OK:
        answer = result.get_value(0, 0)
    if answer is None:
        words = result.error_message.decode(errors="replace") if result is not None else ""
        raise psycopg.OperationalError(words or "no answer to pg_backend_pid()")
    return int(answer)


def problem() -> str | None:
    """Why this process (worker, beat, a command) cannot start on its DATABASE_URL's pool, in
    words; None when it can."""
    global _found
    _found = pooling()
    if _found != TRANSACTION:
        if _found == SESSION:
            logger.info("the database is reached through a connection pooler in session mode")
        return None
    return (
        "its DATABASE_URL is a connection pool in transaction mode (PgBouncer's pool_mode = "
        "transaction), which gives each transaction whichever server session is free: it "
        "needs a session of its own, from one transaction to the next (a run's staging tables, "
        "session settings). Point its DATABASE_URL at a pool in session mode or at PostgreSQL "
        "itself (README: Behind PgBouncer)"
    )


def _refuse(process: str) -> None:
    found = problem()
    if found is None:
        return
    logger.critical("%s not started: %s", process, found)
    print(f"importbeat {process} not started: {found}", file=sys.stderr, flush=True)
    # Celery catches exceptions in these signals' receivers; leave before anything is consumed.
    sys.stderr.flush()
    os._exit(1)


@worker_init.connect
def _worker_needs_a_session(**_kwargs: Any) -> None:
    _refuse("worker")


@beat_init.connect
def _beat_needs_a_session(**_kwargs: Any) -> None:
    _refuse("beat")


# The commands whose work is a session's (project/settings.py: SESSION_PROCESSES).
COMMANDS = ("run_import", "migrate")


def _command_needs_a_session(connection: Any, **_kwargs: Any) -> None:
    """At the command's first connection: refuse a pool in transaction mode, once."""
    from django.core.management import CommandError

    connection_created.disconnect(dispatch_uid="importbeat.command_session")
    command = application_name().removeprefix("importbeat ")
    if found := problem():
        raise CommandError(f"importbeat {command} not started: {found}")


if application_name().removeprefix("importbeat ") in COMMANDS:
    connection_created.connect(
        _command_needs_a_session, weak=False, dispatch_uid="importbeat.command_session"
    )


@worker_process_init.connect
def _pool_process_started(**_kwargs: Any) -> None:
    if _found:
        connection_created.connect(
            _note_server_pid, weak=False, dispatch_uid="importbeat.server_pid"
        )


def _note_server_pid(connection: Any, **_kwargs: Any) -> None:
    """The server session's id, where the pooler's stands in `info.backend_pid`."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        connection.server_pid = cursor.fetchone()[0]
