"""Whom a run's statement waited for, when its time limit struck while it waited for a lock.

A run whose merge waited for its dataset's row (a long dataset deletion, an operator's open
transaction) or its import's (an edit left open) until its time limit ended `timed_out` saying
only "the run exceeded its 3s time limit": not that it spent that time waiting, nor for whom.
The owner raised the timeout, which changed nothing; the operator had no lead. Beat names the
session it waited for (project.beat.lock_holders); a run now does too.

It is asked the moment the soft time limit strikes (project.worker_connections wraps the pool's
handler of that signal), on a connection of its own: by the time the run's own handler runs,
the statement that waited was already given up, and nothing says what it waited for.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from django.db import connection

from schedules.display import duration

logger = logging.getLogger("importbeat.runs")

# The sessions the backend %s waits for (pg_blocking_pids: empty unless it waits for a lock).
BLOCKING = """
SELECT b.pid, coalesce(nullif(b.application_name, ''), b.usename), b.state,
       (extract(epoch FROM now() - coalesce(b.xact_start, b.query_start)) * 1000)::bigint
FROM pg_stat_activity b
WHERE b.pid = ANY(pg_blocking_pids(%s))
ORDER BY b.xact_start
LIMIT 3
"""

# The sessions the last look found holding the lock, each in words (none: it waited for none).
_holders: list[str] = []


def note() -> None:
    """Note whom this process's connection's statement waits for now (none: nothing noted).
    Never raises: it runs in the handler of the time limit's signal."""
    global _holders
    _holders = []
    try:
        raw = connection.connection
        if raw is None or raw.info.transaction_status != psycopg.pq.TransactionStatus.ACTIVE:
            return
        # Behind a pooler the server session's id is noted apart (project/database_pooler.py):
        # psycopg's is the pooler's, for which PostgreSQL found no one.
        pid = getattr(connection, "server_pid", None) or raw.info.backend_pid
        with psycopg.connect(**side_connection_params()) as side:
            holders = side.execute(BLOCKING, [pid]).fetchall()
    except Exception as error:  # (a signal handler: whatever happens, the limit strikes)
        logger.warning("what the run waited for was not asked: %s", error)
        return
    _holders = [
        f"pid {pid}: {who}, {state} for {duration(milliseconds)}"
        for pid, who, state, milliseconds in holders
    ]


def side_connection_params() -> dict[str, Any]:
    """The worker's own connection settings, every option of DATABASES included (sslmode, a
    client certificate, a service file: host, port, user and password alone were refused by a
    server that asks for more), in autocommit, given up after 3 s."""
    return {**connection.get_connection_params(), "autocommit": True, "connect_timeout": 3}


def _taken() -> list[str]:
    """What the last look found, forgotten once read."""
    global _holders
    found, _holders = _holders, []
    return found


def noted() -> str:
    """What `note` found at the last time limit (" while it waited for a lock … held (…)"),
    "" when the run waited for no lock; forgotten once read."""
    holders = _taken()
    if not holders:
        return ""
    one = "another database session" if len(holders) == 1 else "other database sessions"
    return f" while it waited for a lock {one} held ({'; '.join(holders)})"


def whose() -> str:
    """The sessions `note` found holding the lock ("pid 4242: psql, idle in transaction for
    12.345 s"), "" when none; forgotten once read, as `noted`."""
    return "; ".join(_taken())
