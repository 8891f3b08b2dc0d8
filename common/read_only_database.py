"""A database that answers and takes no writes, said as such.

A standby that a failover left DATABASE_URL on, or a server whose transactions are read-only
(`default_transaction_read_only`, which managed providers turn on when the disk is nearly
full), answers every read and refuses every write. `SELECT 1` passed: `/api/v1/health` said
all was well, a worker started and failed each run it took before claiming it (its message
acknowledged, the run left `queued` with nothing behind it), and a trigger answered a 500.

Shared by the health check and the worker's start-up check (what the server says of itself),
and by the API's and the runner's handling of a write it refused, which is why it lives in
`common`.
"""

from __future__ import annotations

from typing import Any

import psycopg

from .error_words import chain

# One round trip: is the server a standby, and are new transactions read-only?
QUERY = "SELECT pg_is_in_recovery(), current_setting('transaction_read_only')"

STANDBY = "it is a standby in recovery: point DATABASE_URL at the primary"
READ_ONLY = (
    "its transactions are read-only: default_transaction_read_only is on, as a provider sets "
    "it when the disk is nearly full; free space, or turn it off"
)
# What a request that wanted to write is answered (the API's 503, a page's text).
ANSWER = "the database takes no writes now, so nothing was changed; try again in a few minutes"


def why(in_recovery: bool, transaction_read_only: str) -> str | None:
    """Why the server takes no writes, from QUERY's row; None when it takes them."""
    if in_recovery:
        return STANDBY
    if transaction_read_only == "on":
        return READ_ONLY
    return None


def reason(cursor: Any) -> str | None:
    """Why the server behind `cursor` (Django's or psycopg's) takes no writes; None if it does."""
    cursor.execute(QUERY)
    in_recovery, transaction_read_only = cursor.fetchone()
    return why(in_recovery, transaction_read_only)


def refused(error: BaseException) -> bool:
    """Whether `error` is a write the server refused for being read-only (SQLSTATE 25006)."""
    return any(isinstance(link, psycopg.errors.ReadOnlySqlTransaction) for link in chain(error))
