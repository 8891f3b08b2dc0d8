"""A write retried on a fresh connection while the database blinks (a restart, a failover).

A run's end, its retry note, its cancel check, a notification's log: each is tried again on a
new connection after each of RETRY_PAUSES (about 16 s in all) when the connection fails, so a
database away for a few seconds does not turn a good run into a lost one, a run's lost
database into a lost worker, nor a webhook sent into one sent again half an hour later.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from typing import TypeVar

import psycopg
from django.db import DatabaseError, InterfaceError, OperationalError
from django.db import connection as db_connection

from common import error_words

logger = logging.getLogger("importbeat.runs")

_T = TypeVar("_T")

# The pauses (seconds) before each try again.
RETRY_PAUSES = (0.2, 0.5, 1, 2, 4, 8)
CONNECTION_ERRORS = (OperationalError, InterfaceError)
# PostgreSQL's codes of a session the server ended (57P: a restart, pg_terminate_backend) or
# lost (08).
SESSION_ENDED = ("57P", "08")


def connection_lost(error: BaseException) -> bool:
    """Whether `error` is the database's connection failing (none could be made, or the one in
    use broke), not a statement's error on a sound connection (a deadlock, a timeout).

    The server's word that it ended the session counts even while psycopg still holds the
    session as sound, as it does when the word comes inside a transaction, the socket's end
    not read yet: such a request was a 500, "an unexpected error", and a maintenance pass
    failed with a traceback (maint hunt)."""
    if not isinstance(error, (*CONNECTION_ERRORS, psycopg.OperationalError)):
        return False
    raw = db_connection.connection
    if raw is None or bool(raw.closed) or bool(getattr(raw, "broken", False)):
        return True
    return any(
        isinstance(link, psycopg.Error) and (link.sqlstate or "").startswith(SESSION_ENDED)
        for link in error_words.chain(error)
    )


def on_a_fresh_connection(call: Callable[[], _T], what: str) -> _T:
    """`call()`, tried again on a fresh connection after each of RETRY_PAUSES when the
    database connection fails (`what` logged then), unless a caller's transaction is open: the
    caller's own retry applies."""
    if db_connection.in_atomic_block:
        return call()
    for pause in RETRY_PAUSES:
        try:
            return call()
        except CONNECTION_ERRORS as failure:
            logger.warning("%s, again in %ss: %s", what, pause, failure)
            with contextlib.suppress(DatabaseError):
                db_connection.close()
            time.sleep(pause)
    return call()
