"""The PostgreSQL versions importbeat supports, checked on every new database connection.

The importer relies on features of PostgreSQL 14 and later (generated columns with
hashtextextended; pg_input_is_valid from 16 when present; nothing of 15's, such as
regexp_count: on 14 every file with a quoted line break failed); an older server would fail
in the middle of a run with an SQL error. Checking each new connection refuses it at once, in
every process (web, worker, beat, manage.py), before anything is written.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ImproperlyConfigured

MIN_VERSION = 14
# Tested: 14 to 17 (the suite runs on the embedded 16 and, when one answers, the system's).
MAX_TESTED_VERSION = 17


def refuse_unsupported(version: int) -> None:
    """`version` as libpq gives it (150020 is 15.20)."""
    major = version // 10000
    if major < MIN_VERSION:
        raise ImproperlyConfigured(
            f"PostgreSQL {major} is not supported: importbeat needs PostgreSQL {MIN_VERSION} "
            f"or newer (tested with {MIN_VERSION} to {MAX_TESTED_VERSION}). Point DATABASE_URL "
            "at a newer server."
        )


def check_new_connection(sender: Any, connection: Any, **kwargs: Any) -> None:
    """`connection_created` receiver: close and refuse a connection to a server too old."""
    if connection.vendor != "postgresql":
        return
    try:
        # The server this connection reached: `pg_version` is the first connection's, kept
        # for the process, so a failover to an older server was taken (review).
        refuse_unsupported(connection.connection.info.server_version)
    except ImproperlyConfigured:
        connection.close()
        raise
