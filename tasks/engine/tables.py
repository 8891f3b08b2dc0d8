"""What every step of the engine shares: the session's work tables and small SQL helpers.

A run works in TEMP tables of its own connection: `importbeat_raw` (every row of the file, as
text: `stage`), `importbeat_bad` (one row per problem: `validate`), `importbeat_dupes` (the
rows a later row with the same key supersedes: `validate`) and `importbeat_changes` (the new
and changed rows: `merge`).

A connection keeps them from one small run to the next, emptied (`release_staging`): creating
and dropping them (their catalog rows, the line numbers' sequence, a commit each) cost a 100-row
run more database time than its COPY and its INSERT together. `importbeat_bad` and
`importbeat_dupes` have the same columns for every file; `importbeat_raw` (and
`importbeat_changes`, shaped like it) is kept while the next run's file has the same layout,
and made again otherwise. A run that staged many rows drops them all, as a run that stopped
half way leaves them to be dropped by the next one (`drop_leftovers`).
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg
from django.db import transaction
from psycopg import sql

from schedules.dataset_keys import KEY_WHITESPACE

RAW = "importbeat_raw"


BAD = "importbeat_bad"


DUPES = "importbeat_dupes"


CHANGES = "importbeat_changes"


# What a key is trimmed of as it lands, and as `?key=` looks for it: one definition for both.
WHITESPACE = KEY_WHITESPACE


# Sorting a million keys for the repeated-key check fits in memory rather than spilling.
WORK_MEM = "256MB"


def lit(value: object) -> sql.Literal:
    return sql.Literal(value)


def trimmed(column: sql.Composable) -> sql.Composed:
    return sql.SQL("btrim(coalesce({}, ''), {})").format(column, lit(WHITESPACE))


# How many rendered statements a process keeps (rendered): one per layout and step, the layouts
# of the last few dozen imports it ran.
RENDERED_STATEMENTS = 256


_rendered: OrderedDict[tuple, sql.SQL] = OrderedDict()


def rendered(pg: psycopg.Cursor, key: tuple, build: Callable[[], sql.Composable]) -> sql.SQL:
    """The statement `build()` composes, as text for this connection, composed once per `key`.

    A statement that depends only on a file's layout (its staging table, its COPY, its checks,
    its rows' JSON) is the same for every run of an import; composing and rendering it was
    0.3 ms of a 100-row run's 8 ms of CPU (issue 15). `key` names everything `build` reads.
    """
    full = (pg.connection.info.encoding, *key)
    text = _rendered.get(full)
    if text is None:
        text = _rendered[full] = sql.SQL(build().as_string(pg))
        if len(_rendered) > RENDERED_STATEMENTS:
            _rendered.popitem(last=False)
    else:
        _rendered.move_to_end(full)
    return text


@dataclass
class Staged:
    """What staging learned about the file."""

    rows: int = 0
    line_feeds: int = 0  # written by the fast path; tells whether fields span lines
    # Carriage returns without a line feed (the fast path's count): inside a quoted field they
    # break its line for the csv module, whose line numbers the fast path's must be.
    lone_returns: int = 0
    path: str = "copy"  # "copy" or "python" (the fallback)


# Rows ANALYZE samples are 300 times this. The planner needs little of a work table: its row
# count and the share of rows a filter keeps, which 3,000 rows tell as well as the default
# 30,000 (measured: ANALYZE of a million staged rows 0.25 – 0.5 s at the default).
STATISTICS_TARGET = 10


# A work table with fewer rows than this gets neither statistics nor extra memory: whatever
# plan the planner picks without them reads a few hundred rows in well under a millisecond,
# less than ANALYZE itself costs (with its settings, three statements of a 100-row run's 38).
SMALL_TABLE_ROWS = 1000


def analyze(pg: psycopg.Cursor, table: str, rows: int, *columns: str) -> None:
    """Statistics for a TEMP table of `rows` rows, which autovacuum never analyzes.

    The sampling setting is local to a transaction (the caller's, or one of its own here), so
    nothing has to reset it.
    """
    if rows < SMALL_TABLE_ROWS:
        return
    names = sql.SQL(", ").join(sql.Identifier(c) for c in columns)
    template = "ANALYZE {} ({})" if columns else "ANALYZE {}"
    with transaction.atomic(savepoint=False):
        pg.execute(
            sql.SQL("SET LOCAL default_statistics_target = {}").format(lit(STATISTICS_TARGET))
        )
        pg.execute(sql.SQL(template).format(sql.Identifier(table), names))


@contextmanager
def work_mem(pg: psycopg.Cursor, rows: int) -> Iterator[None]:
    """More memory for the sorts and hashes over `rows` staged rows, inside the block.

    Local to a transaction (the caller's, or one of its own here), so nothing has to reset it.
    """
    if rows < SMALL_TABLE_ROWS:
        yield
        return
    with transaction.atomic(savepoint=False):
        pg.execute(sql.SQL("SET LOCAL work_mem = {}").format(sql.Literal(WORK_MEM)))
        yield


@dataclass
class _Kept:
    """The work tables a connection holds, empty, between runs (as committed statements made
    them: a table created in a transaction that rolled back is not there)."""

    raw: bytes = b""  # the CREATE statement of its importbeat_raw, b"" for none
    first_line: int = 1  # where that table's line numbers start
    changes: bool = False  # importbeat_changes, made from that importbeat_raw
    checks: bool = False  # importbeat_bad and importbeat_dupes
    dead: int = 0  # rows deleted from them since they were last truncated


# Emptied tables are truncated once they have had this many rows deleted since their last
# TRUNCATE (or creation). A TRUNCATE gives a table new files and catalog rows (1 to 3 ms, a
# tenth of a small run's time); a DELETE of a few hundred rows takes 0.1 ms, but temporary
# tables are never vacuumed, so the deleted rows stay in the table for every scan until
# then: 1,000 of them add some 20 microseconds to a scan.
DEAD_ROWS_LIMIT = 1000


_kept: weakref.WeakKeyDictionary[psycopg.Connection, _Kept] = weakref.WeakKeyDictionary()


# The connections whose work tables may hold a run's rows: the run in progress, or one that
# stopped half way. A fresh connection has none, and a run that ends empties or drops its own.
_holding: weakref.WeakSet[psycopg.Connection] = weakref.WeakSet()


def kept(pg: psycopg.Cursor) -> _Kept:
    return _kept.setdefault(pg.connection, _Kept())


def _note(pg: psycopg.Cursor, **made: object) -> None:
    """Note tables as kept once the transaction that made them commits (at once outside one)."""
    state = kept(pg)
    transaction.on_commit(lambda: vars(state).update(made))


def drop_leftovers(pg: psycopg.Cursor) -> None:
    """Before a run: drop the tables an earlier run on this connection may have left full."""
    if pg.connection in _holding:
        drop_staging(pg)


def use_raw_table(pg: psycopg.Cursor, create: sql.Composed, first_line: int) -> None:
    """Make `importbeat_raw` as `create` says, empty, with its line numbers from `first_line`.

    The table the connection keeps serves when it was made by the same statement (the same
    columns, key, hash and first line); otherwise it goes, with the table of changes made
    from it, and `create` makes a new one.
    """
    statement = create.as_bytes(pg)
    state = kept(pg)
    if state.raw == statement:
        if pg.connection in _holding:
            # This run staged rows already (COPY rejected the file; the Python path starts
            # over): they go, and the sequence that numbered them starts again.
            pg.execute(sql.SQL("TRUNCATE {} RESTART IDENTITY").format(sql.Identifier(RAW)))
            state.dead = 0
    else:
        if state.raw or pg.connection in _holding:
            pg.execute(
                sql.SQL("DROP TABLE IF EXISTS {}, {}").format(
                    sql.Identifier(RAW), sql.Identifier(CHANGES)
                )
            )
        state.raw, state.changes, state.dead = b"", False, 0
        pg.execute(create)
        _note(pg, raw=statement, first_line=first_line)
    _holding.add(pg.connection)


def use_check_tables(pg: psycopg.Cursor) -> None:
    """Make sure `importbeat_bad` and `importbeat_dupes` exist (their columns never change)."""
    if kept(pg).checks:
        return
    pg.execute(
        sql.SQL(
            "CREATE TEMP TABLE IF NOT EXISTS {}"
            " (line bigint, column_name text, value text, reason text)"
        ).format(sql.Identifier(BAD))
    )
    pg.execute(
        sql.SQL(
            "CREATE TEMP TABLE IF NOT EXISTS {} (line bigint, key text, superseded_by bigint)"
        ).format(sql.Identifier(DUPES))
    )
    _note(pg, checks=True)


def has_changes_table(pg: psycopg.Cursor) -> bool:
    """Whether `importbeat_changes` exists, empty, for the raw table in use."""
    return kept(pg).changes


def made_changes_table(pg: psycopg.Cursor) -> None:
    _note(pg, changes=True)


def release_staging(pg: psycopg.Cursor, rows: int) -> None:
    """After a run: empty the work tables for the next run (DELETE, or TRUNCATE once in a
    while: DEAD_ROWS_LIMIT), or drop them after a big file.

    A big file's tables go at once (their disk, their statistics, which would mislead the
    planner about the next, smaller file); so do tables this connection cannot be sure of
    (made in a transaction still open, a test's).
    """
    state = kept(pg)
    if rows >= SMALL_TABLE_ROWS or not state.raw or not state.checks:
        drop_staging(pg)
        return
    tables = [RAW, BAD, DUPES] + ([CHANGES] if state.changes else [])
    state.dead += rows
    if state.dead >= DEAD_ROWS_LIMIT:
        pg.execute(
            sql.SQL("TRUNCATE {} RESTART IDENTITY").format(
                sql.SQL(", ").join(sql.Identifier(t) for t in tables)
            )
        )
        state.dead = 0
    else:
        # One statement: the DELETEs, and the line numbers' sequence back at the start.
        deletes = sql.SQL(", ").join(
            sql.SQL("{} AS (DELETE FROM {})").format(sql.Identifier(f"gone_{t}"), sql.Identifier(t))
            for t in tables
        )
        pg.execute(
            sql.SQL("WITH {} SELECT setval(pg_get_serial_sequence({}, 'line'), {}, false)").format(
                deletes, lit(RAW), lit(state.first_line)
            )
        )
    _holding.discard(pg.connection)


def drop_staging(pg: psycopg.Cursor) -> None:
    pg.execute(
        sql.SQL("DROP TABLE IF EXISTS {}").format(
            sql.SQL(", ").join(sql.Identifier(t) for t in (RAW, BAD, DUPES, CHANGES))
        )
    )
    _kept.pop(pg.connection, None)
    _holding.discard(pg.connection)
