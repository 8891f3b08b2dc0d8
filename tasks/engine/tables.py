"""What every step of the engine shares: the session's work tables and small SQL helpers.

A run works in TEMP tables of its own connection: `importbeat_raw` (every row of the file, as
text: `stage`), `importbeat_bad` (one row per problem: `validate`), `importbeat_dupes` (the
rows a later row with the same key supersedes: `validate`) and `importbeat_changes` (the new
and changed rows: `merge`). They live until the run drops them, or its connection ends.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg
from django.db import transaction
from psycopg import sql

RAW = "importbeat_raw"


BAD = "importbeat_bad"


DUPES = "importbeat_dupes"


CHANGES = "importbeat_changes"


WHITESPACE = " \t\r\n"


# Sorting a million keys for the repeated-key check fits in memory rather than spilling.
WORK_MEM = "256MB"


def lit(value: object) -> sql.Literal:
    return sql.Literal(value)


def trimmed(column: sql.Composable) -> sql.Composed:
    return sql.SQL("btrim(coalesce({}, ''), {})").format(column, lit(WHITESPACE))


@dataclass
class Staged:
    """What staging learned about the file."""

    rows: int = 0
    line_feeds: int = 0  # written by the fast path; tells whether fields span lines
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


# The connections that may still hold this module's tables: a run that stopped half way left
# them there. A fresh connection has none, and a run that ends drops its own.
_holding: weakref.WeakSet[psycopg.Connection] = weakref.WeakSet()


def drop_leftovers(pg: psycopg.Cursor) -> None:
    """Before a run: drop the tables an earlier run on this connection may have left."""
    if pg.connection in _holding:
        drop_staging(pg)


def created(pg: psycopg.Cursor) -> None:
    """Note that this connection holds work tables (until drop_staging)."""
    _holding.add(pg.connection)


def drop_staging(pg: psycopg.Cursor) -> None:
    pg.execute(
        sql.SQL("DROP TABLE IF EXISTS {}").format(
            sql.SQL(", ").join(sql.Identifier(t) for t in (RAW, BAD, DUPES, CHANGES))
        )
    )
    _holding.discard(pg.connection)
