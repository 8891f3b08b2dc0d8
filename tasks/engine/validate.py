"""Step 4, validation: the staged rows that cannot land, and the keys that repeat, in SQL.

Bad rows (an empty key, a missing required value, a value of the wrong type, a row the parser
rejected) are found by one query into `importbeat_bad`; repeated keys by one window query into
`importbeat_dupes` (the last occurrence of a key wins). Both keep line numbers, so a run
reports its first failed rows.
"""

from __future__ import annotations

import weakref

import psycopg
from django.db import transaction
from psycopg import sql

from schedules.models import ImportRun
from schedules.services import ROW_VALUE_CHARS, RunCounts

from .first_record import Layout
from .progress import timed
from .tables import (
    BAD,
    DUPES,
    RAW,
    analyze,
    lit,
    rendered,
    trimmed,
    use_check_tables,
    work_mem,
)

ROW_ERROR_CAP = 100


VALUE_CLIP = ROW_VALUE_CHARS


TRUE_WORDS = ("true", "t", "yes", "y", "1")


FALSE_WORDS = ("false", "f", "no", "n", "0")


# ISO 8601 only: PostgreSQL's own date input also takes "01/02/2024", which is ambiguous.
DATE_RE = r"^\d{4}-\d{2}-\d{2}$"
# Plain decimal numbers only. PostgreSQL 16 reads `0x1F`, `0o17` and `1_000` as numbers too (31,
# 15, 1000), 14 and 15 refuse them: the same file landed otherwise by the server's version,
# and a code such as 0x1F became a number.
INT_RE = r"^[+-]?[0-9]+$"
DECIMAL_RE = r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?$"


DATETIME_RE = r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?)?(Z|[+-]\d{2}(:?\d{2})?)?$"


# pg_input_is_valid() arrived in PostgreSQL 16. On 14 and 15 the importer asks the same
# question of a cast inside an exception block (create_input_checks): same answers, slower
# (a subtransaction per value checked).
NATIVE_INPUT_CHECK_VERSION = 160000


CHECKED_TYPES = {"int": "bigint", "decimal": "numeric", "date": "date", "datetime": "timestamptz"}


def check_rows(pg: psycopg.Cursor, run: ImportRun, layout: Layout, staged_rows: int) -> bool:
    """Find the staged rows that cannot land (into `importbeat_bad`); True when there is any."""
    with timed("analyze", run):
        # Temp tables are never auto-analyzed. Without statistics the planner guesses that
        # few staged rows pass `problem IS NULL` and probes the records index once per row
        # (measured 4 s for a million) instead of one hash join (1.5 s).
        analyze(pg, RAW, staged_rows, "key", "problem")
    native_checks = pg.connection.info.server_version >= NATIVE_INPUT_CHECK_VERSION
    if not native_checks and pg.connection not in _with_input_checks:
        for statement in create_input_checks():
            pg.execute(statement)
        connection = pg.connection
        # Noted once committed: a rolled-back transaction (a test's) takes the functions along.
        transaction.on_commit(lambda: _with_input_checks.add(connection))
    use_check_tables(pg)
    with work_mem(pg, staged_rows), timed("bad rows", run):
        pg.execute(
            rendered(
                pg,
                ("bad", layout.key, native_checks),
                lambda: find_bad_rows(layout, native_checks=native_checks),
            )
        )
        problems = pg.rowcount
    analyze(pg, BAD, problems)
    return problems > 0


# The connections that hold the functions create_input_checks makes (they live as long as the
# session): made once per connection, not once per run (four statements of every run).
_with_input_checks: weakref.WeakSet[psycopg.Connection] = weakref.WeakSet()


def create_input_checks() -> list[sql.Composed]:
    """Session functions `pg_temp.importbeat_is_<type>(text)`: pg_input_is_valid before 16.

    Only data exceptions (class 22: bad syntax, out of range) mean "not valid"; anything else,
    a cancelled statement included, still ends the statement.
    """
    return [
        sql.SQL(
            "CREATE OR REPLACE FUNCTION pg_temp.{name}(value text) RETURNS boolean"
            " LANGUAGE plpgsql STABLE AS $$"
            " BEGIN PERFORM value::{type}; RETURN true;"
            " EXCEPTION WHEN data_exception THEN RETURN false; END $$"
        ).format(name=sql.Identifier(f"importbeat_is_{pg_type}"), type=sql.SQL(pg_type))
        for pg_type in CHECKED_TYPES.values()
    ]


def _is_valid(value: sql.Composable, kind: str, native: bool) -> sql.Composed:
    pg_type = CHECKED_TYPES[kind]
    if native:
        return sql.SQL("pg_input_is_valid({}, {})").format(value, lit(pg_type))
    return sql.SQL("pg_temp.{}({})").format(sql.Identifier(f"importbeat_is_{pg_type}"), value)


def _value_check(column: sql.Composable, kind: str, native: bool) -> sql.Composable | None:
    """An expression that is true when the (non-blank) value does NOT fit `kind`."""
    value = trimmed(column)
    if kind == "int":
        return sql.SQL("NOT ({v} ~ {re} AND {valid})").format(
            v=value, re=lit(INT_RE), valid=_is_valid(value, kind, native)
        )
    if kind == "decimal":
        # (NaN and the infinities are no plain number either.) Within a double's range: the
        # API serves the record's numbers as JSON doubles, and one past it (1e400) made the
        # dataset's every page of records a 500; one too small (1e-400) was served as 0.
        return sql.SQL(
            "CASE WHEN {v} ~ {re} AND {valid} THEN abs({v}::numeric) >= {most}"
            " OR ({v}::numeric <> 0 AND abs({v}::numeric) < {least}) ELSE true END"
        ).format(
            v=value,
            re=lit(DECIMAL_RE),
            valid=_is_valid(value, kind, native),
            most=sql.SQL("1e308"),
            least=sql.SQL("1e-307"),
        )
    if kind == "bool":
        return sql.SQL("lower({}) NOT IN ({})").format(
            value, sql.SQL(", ").join(lit(w) for w in TRUE_WORDS + FALSE_WORDS)
        )
    if kind == "date":
        return sql.SQL("NOT ({v} ~ {re} AND {valid})").format(
            v=value, re=lit(DATE_RE), valid=_is_valid(value, kind, native)
        )
    if kind == "datetime":
        return sql.SQL("NOT ({v} ~ {re} AND {valid})").format(
            v=value, re=lit(DATETIME_RE), valid=_is_valid(value, kind, native)
        )
    return None


# A longer key cannot be indexed (PostgreSQL's b-tree holds at most 2,704 bytes an entry, the
# dataset's id and the key together): the whole run failed at the merge, as a lost connection.
MAX_KEY_BYTES = 2048
KEY_TOO_LONG = f"the key is longer than {MAX_KEY_BYTES:,} bytes"

BIGINT_MOST = 2**63 - 1

REASONS = {
    "int": "not a valid int: expected a whole number",
    "decimal": "not a valid decimal: expected a decimal number within ±1e308",
    "bool": "not a valid bool: expected true/false, yes/no, 1/0",
    "date": "not a valid date: expected YYYY-MM-DD",
    "datetime": "not a valid datetime: expected ISO 8601 (YYYY-MM-DDTHH:MM:SS[+HH:MM])",
}

# A whole number past the 64-bit range was refused as "expected a whole number", beside the
# whole number it refused.
INT_OUT_OF_RANGE = (
    f"not a valid int: the whole number is out of range (an int is from "
    f"-{BIGINT_MOST + 1:,} to {BIGINT_MOST:,})"
)


def _out_of_range(column: sql.Composable, kind: str, native: bool) -> sql.Composable | None:
    """True when a (non-blank) value is written as `kind` but past its range (int only: every
    other type's reason names its form or its range already)."""
    if kind != "int":
        return None
    value = trimmed(column)
    return sql.SQL("({v} ~ {re} AND NOT {valid})").format(
        v=value, re=lit(INT_RE), valid=_is_valid(value, kind, native)
    )


def find_bad_rows(layout: Layout, *, native_checks: bool = True) -> sql.Composed:
    """One row per problem (line, column, value, reason) for rows that cannot land.

    Rows the parser already rejected (wrong number of fields) carry their `problem`; the others
    are checked for an empty key or one too long to index, missing required values and values
    of the wrong type.
    `native_checks` off (PostgreSQL 14 and 15) needs create_input_checks() run first.
    """
    checks: list[sql.Composable] = [
        sql.SQL("(NULL::text, NULL::text, s.problem)"),
        sql.SQL(
            "({k}, coalesce(s.{c}, ''), CASE WHEN s.problem IS NULL THEN CASE"
            " WHEN s.key = '' THEN {empty} WHEN octet_length(s.key) > {most} THEN {long} END END)"
        ).format(
            k=lit(layout.key_column),
            c=layout.col(layout.key_index),
            empty=lit("the key is empty"),
            most=lit(MAX_KEY_BYTES),
            long=lit(KEY_TOO_LONG),
        ),
    ]
    conditions: list[sql.Composable] = [
        sql.SQL("problem IS NOT NULL"),
        sql.SQL("key = ''"),
        sql.SQL("octet_length(key) > {}").format(lit(MAX_KEY_BYTES)),
    ]
    for index, name in enumerate(layout.names):
        column = layout.spec.get(name)
        if column is None:
            continue
        col = layout.col(index)
        blank = sql.SQL("{} = ''").format(trimmed(col))
        kind = column.get("type", "text")
        wrong = _value_check(col, kind, native_checks)
        cases: list[sql.Composable] = []
        if column.get("required"):
            missing = lit("a required value is missing")
            cases.append(sql.SQL("WHEN {} THEN {}").format(blank, missing))
            conditions.append(blank)
        if (past := _out_of_range(col, kind, native_checks)) is not None:
            # Before the general reason (the CASE takes the first): `wrong` covers it too.
            cases.append(
                sql.SQL("WHEN NOT {} AND {} THEN {}").format(blank, past, lit(INT_OUT_OF_RANGE))
            )
        if wrong is not None:
            cases.append(
                sql.SQL("WHEN NOT {} AND {} THEN {}").format(blank, wrong, lit(REASONS[kind]))
            )
            conditions.append(sql.SQL("(NOT {} AND {})").format(blank, wrong))
        if cases:
            check = sql.SQL(
                "({n}, coalesce(s.{c}, ''), CASE WHEN s.problem IS NULL THEN CASE {cases} END END)"
            )
            checks.append(check.format(n=lit(name), c=col, cases=sql.SQL(" ").join(cases)))
    return sql.SQL(
        "INSERT INTO {bad} (line, column_name, value, reason)"
        " SELECT s.line, e.col, left(e.val, {clip}), e.reason"
        " FROM (SELECT * FROM {raw} WHERE {conditions}) s"
        " CROSS JOIN LATERAL (VALUES {checks}) e(col, val, reason)"
        " WHERE e.reason IS NOT NULL"
    ).format(
        bad=sql.Identifier(BAD),
        raw=sql.Identifier(RAW),
        clip=lit(VALUE_CLIP),
        conditions=sql.SQL(" OR ").join(conditions),
        checks=sql.SQL(", ").join(checks),
    )


def any_repeated_key() -> sql.Composed:
    """Whether a key occurs twice: counting distinct keys is one sort of the keys alone.

    Measured on a million keys: 0.6 s, against 1.7 s for the window query below, which sorts
    whole rows; files seldom repeat a key, so the window runs only when one does.
    """
    return sql.SQL(
        "SELECT count(*) <> count(DISTINCT key COLLATE \"C\") FROM {raw} WHERE key <> ''"
    ).format(raw=sql.Identifier(RAW))


def find_repeated_keys() -> sql.Composed:
    """Every occurrence of a key but its last, with the line of that last one (it wins).

    The "C" collation compares bytes: sorting a million keys under a locale costs twice as long.
    """
    return sql.SQL(
        "INSERT INTO {dupes} (line, key, superseded_by)"
        " SELECT line, key, superseded_by FROM ("
        '  SELECT line, key, max(line) OVER (PARTITION BY key COLLATE "C") AS superseded_by'
        "  FROM {raw} WHERE key <> ''"
        " ) t WHERE line < superseded_by"
    ).format(dupes=sql.Identifier(DUPES), raw=sql.Identifier(RAW))


def count_failed_rows() -> sql.Composed:
    return sql.SQL(
        "SELECT count(*) FROM (SELECT line FROM {bad} UNION SELECT line FROM {dupes}) t"
    ).format(bad=sql.Identifier(BAD), dupes=sql.Identifier(DUPES))


def first_row_errors(layout: Layout) -> sql.Composed:
    return sql.SQL(
        "SELECT line, column_name, value, reason FROM ("
        " SELECT line, column_name, value, reason FROM {bad}"
        " UNION ALL"
        " SELECT line, {key}, left(key, {clip}),"
        "  'key repeated; superseded by line ' || superseded_by"
        " FROM {dupes}"
        ") t ORDER BY line, column_name NULLS FIRST LIMIT {cap}"
    ).format(
        bad=sql.Identifier(BAD),
        dupes=sql.Identifier(DUPES),
        key=lit(layout.key_column),
        clip=lit(VALUE_CLIP),
        cap=lit(ROW_ERROR_CAP),
    )


def report_failed_rows(
    pg: psycopg.Cursor, run: ImportRun, layout: Layout, counts: RunCounts
) -> None:
    """Mark the rows a later row with the same key supersedes; count and list every failed row."""
    repeated = 0
    with timed("repeated keys", run):
        pg.execute(any_repeated_key())
        if pg.fetchone()[0]:
            pg.execute(find_repeated_keys())
            repeated = pg.rowcount
    analyze(pg, DUPES, repeated)
    pg.execute(count_failed_rows())
    counts.rows_failed = pg.fetchone()[0]
    counts.row_errors = []
    if counts.rows_failed:
        pg.execute(first_row_errors(layout))
        counts.row_errors = [
            {"line": line, "column": column, "value": value, "reason": reason}
            for line, column, value, reason in pg.fetchall()
        ]
