"""The PostgreSQL versions importbeat supports, checked on every new database connection, and
the session settings importbeat pins on it, whatever the server sets for its role or database.

The importer relies on features of PostgreSQL 14 and later (generated columns with
hashtextextended; pg_input_is_valid from 16 when present; nothing of 15's, such as
regexp_count: on 14 every file with a quoted line break failed); an older server would fail
in the middle of a run with an SQL error. Checking each new connection refuses it at once, in
every process (web, worker, beat, manage.py), before anything is written.

Settings an operator's server carries for importbeat's role or database (`ALTER ROLE … SET`,
`ALTER DATABASE … SET`, `?options=-c…` in DATABASE_URL) that importbeat's code cannot work
under are pinned per connection (README: Server settings importbeat pins):

- `DateStyle` other than ISO (`'SQL, DMY'`, `'German'`, `'Postgres'`): psycopg reads a
  timestamp only in ISO, so every query that read one (a run, an import, a session) failed
  with "can't parse timestamptz with DateStyle 'SQL, DMY'": no page, no run, no beat tick.
- `IntervalStyle` other than `postgres`: the same for an interval.
- `standard_conforming_strings = off`: a backslash in a literal of hand-written SQL escapes.
- `default_transaction_isolation` `serializable` or `repeatable read`, which operators set for
  safety: importbeat's claims, counters and hand-offs are written for read committed (a
  conditional UPDATE that finds a row another session changed reads it again), and under
  either level concurrent runs failed with serialization failures (40001), said "the run lost
  its connection to importbeat's database", retried, their messages sent again: 20 imports run
  three times over took 28 s instead of 2 (tests/bench/bench_server_settings.py).
- `jit` with low thresholds: every statement of a run compiled, a small run 20-40 times slower.

The first three the server reports at login, so a connection that has them right (the default)
is not asked about them; the isolation and jit it does not report, so each new connection sets
them, in one statement with whatever else it pins (once per connection: about 0.1 ms on a new
connection's 1.8 ms). The same statement reads the session's current schema: a `search_path`
that names no schema that exists is refused in words (importbeat's tables live in its first
schema, whichever it is: a schema of its own works as `public` does).
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ImproperlyConfigured

# What psycopg and importbeat's SQL read a session in, where the server reports it at login:
# the setting, whether the reported value is right, and the value pinned when it is not.
REPORTED_PINS: tuple[tuple[str, str, str], ...] = (
    # psycopg reads dates and timestamps in ISO only; the order (MDY) is PostgreSQL's default,
    # and importbeat's own date input is ISO 8601, which no order changes.
    ("DateStyle", "ISO", "ISO, MDY"),
    ("IntervalStyle", "postgres", "postgres"),
    ("standard_conforming_strings", "on", "on"),
)
# Set on each new connection, as the server does not report it at login.
UNREPORTED_PINS: tuple[tuple[str, str], ...] = (
    ("default_transaction_isolation", "read committed"),
    # A run is many short statements and a few set-based ones bound by I/O and hashing: LLVM's
    # compile time is all JIT adds to them. With an operator's low thresholds (jit_above_cost
    # = 0) every statement compiled: a 100-row run took 0.7-1.3 s instead of 0.02-0.04, and
    # 200,000 rows 3.0-3.7 s against 2.1-2.5 s with it off (PostgreSQL 15 with LLVM,
    # tests/bench/bench_server_settings.py). Off costs nothing: it rides on this statement.
    ("jit", "off"),
)

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
    """`connection_created` receiver: close and refuse a connection to a server too old, or
    whose search_path names no schema; pin the session settings importbeat needs."""
    if connection.vendor != "postgresql":
        return
    try:
        # The server this connection reached: `pg_version` is the first connection's, kept
        # for the process, so a failover to an older server was taken (review).
        refuse_unsupported(connection.connection.info.server_version)
        schema, search_path, connection.default_synchronous_commit = pin_session(
            connection.connection
        )
        # What this session commits at until a process sets its own (worker_connections).
        connection.session_synchronous_commit = connection.default_synchronous_commit
        refuse_no_schema(schema, search_path)
    except ImproperlyConfigured:
        connection.close()
        raise


def pin_session(raw: Any) -> tuple[str | None, str, str]:
    """Pin what `raw` (a psycopg connection) must run its session in, in one statement: the
    reported settings where the server's values at login differ, and the unreported ones.
    Answers the session's current schema (None: its search_path names none that exists), its
    search_path, and the synchronous_commit its role or database gives it (durable_level)."""
    info = raw.info
    wrong = [
        (name, value)
        for name, right, value in REPORTED_PINS
        if not (info.parameter_status(name) or "").startswith(right)
    ]
    wrong += UNREPORTED_PINS
    calls = "".join("set_config(%s, %s, false), " for _ in wrong)
    with raw.cursor() as cursor:
        cursor.execute(
            f"SELECT {calls}current_schema(), current_setting('search_path'),"
            " current_setting('synchronous_commit')",
            [part for pair in wrong for part in pair],
        )
        *_, schema, search_path, synchronous_commit = cursor.fetchone()
    return schema, search_path, synchronous_commit


# The synchronous_commit levels at which a commit waits for the disk (the standby's too, for
# the remote ones).
# https://www.postgresql.org/docs/current/runtime-config-wal.html#GUC-SYNCHRONOUS-COMMIT
DURABLE_LEVELS = ("on", "remote_write", "remote_apply")


def durable_level(connection: Any) -> str:
    """The synchronous_commit a commit that must survive a crash runs at on `connection` (a
    Django connection, pinned by check_new_connection): its role's or database's own when that
    waits for the disk, else `on`; the session's own (WORKER_SYNCHRONOUS_COMMIT) when it is
    stronger still. An operator's `off` for the role made a run's rows and its outcome commit
    without waiting, where README promises they are durable (serverdefaults hunt:
    services.durable_commit set the role's default, `off`, again). A worker's `on` over the
    database's `remote_apply`, or its own `remote_apply`, committed them at `on` (review2)."""
    level = getattr(connection, "default_synchronous_commit", "on")
    level = level if level in DURABLE_LEVELS else "on"
    session = getattr(connection, "session_synchronous_commit", level)
    if session in DURABLE_LEVELS and _STRENGTH.index(session) > _STRENGTH.index(level):
        return session
    return level


# The durable levels from the least waiting: `remote_write` waits for a standby's write, `on`
# for its flush, `remote_apply` for its replay.
_STRENGTH = ("remote_write", "on", "remote_apply")


def refuse_no_schema(schema: str | None, search_path: str) -> None:
    """A search_path that names no schema that exists (`?options=-csearch_path%3Dimportbeat`,
    or `ALTER ROLE … SET search_path`, before the schema was created): importbeat's tables are
    created and found in the first schema of it, so `migrate` failed with Django's "Unable to
    create the django_migrations table (no schema has been selected to create in)", and every
    other process with a missing table."""
    if schema is None:
        raise ImproperlyConfigured(
            f"the database's search_path ({search_path}) names no schema that exists there: "
            "create the schema "
            "importbeat's tables go in (CREATE SCHEMA … AUTHORIZATION its user), or correct "
            "search_path in DATABASE_URL's options or the role's or database's settings"
        )
