"""What every step of the engine shares: the session's work tables and small SQL helpers.

A run works in TEMP tables of its own connection: `importbeat_raw` (every row of the file, as
text: `stage`), `importbeat_bad` (one row per problem: `validate`), `importbeat_dupes` (the
rows a later row with the same key supersedes: `validate`) and `importbeat_changes` (the new
and changed rows: `merge`). They live until the run drops them, or its connection ends.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg
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


def analyze(pg: psycopg.Cursor, table: str, *columns: str) -> None:
    """Statistics for a TEMP table, which autovacuum never analyzes."""
    names = sql.SQL(", ").join(sql.Identifier(c) for c in columns)
    template = "ANALYZE {} ({})" if columns else "ANALYZE {}"
    pg.execute(sql.SQL("SET default_statistics_target = {}").format(lit(STATISTICS_TARGET)))
    try:
        pg.execute(sql.SQL(template).format(sql.Identifier(table), names))
    finally:
        pg.execute("RESET default_statistics_target")


@contextmanager
def work_mem(pg: psycopg.Cursor) -> Iterator[None]:
    pg.execute(sql.SQL("SET work_mem = {}").format(sql.Literal(WORK_MEM)))
    try:
        yield
    finally:
        pg.execute("RESET work_mem")


def drop_staging() -> sql.Composed:
    return sql.SQL("DROP TABLE IF EXISTS {}").format(
        sql.SQL(", ").join(sql.Identifier(t) for t in (RAW, BAD, DUPES, CHANGES))
    )
