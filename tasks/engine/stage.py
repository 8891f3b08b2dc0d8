"""Step 3, staging: every row of the file into the TEMP table `importbeat_raw`, as text.

Fast path (`stage_copy`): the downloaded bytes go to PostgreSQL untouched (`COPY ... FORMAT
csv`), so Python never parses, encodes or hashes a row. COPY, however, aborts at the first row
with the wrong number of fields or an undecodable byte, and such a file deserves a report of its
bad rows, not a failure. So every downloaded byte is also spooled to a temporary file (disk, not
memory), and a file COPY rejects is staged again from the spool by the Python path
(`stage_python`), which parses it with the csv module and marks the bad rows with their line
numbers. Both paths fill the same table, whose generated columns key and hash each row, so a
record is the same whichever path staged it.
"""

from __future__ import annotations

import io
import logging
import tempfile
from collections.abc import Callable
from typing import IO

import psycopg
from psycopg import sql

from schedules.models import ScheduledImport
from schedules.services import RunCounts

from ..errors import PermanentImportError
from . import stage_copy
from .first_record import (
    BOM,
    Layout,
    codec_name,
    delimiter_bytes,
    layout_for,
    line_breaks,
    max_field_bytes,
    parse_first_record,
    read_prefix,
    refuse_a_utf8_mark,
    sniff,
    too_long,
)
from .progress import ProgressReporter
from .stage_python import copy_parsed
from .tables import RAW, Staged, lit, rendered, trimmed, use_raw_table

logger = logging.getLogger("importbeat.importer")


class Feed(io.RawIOBase):
    """A readable file over a `read(size)` function (the spool, then the rest of the download)."""

    def __init__(self, read: Callable[[int], bytes]) -> None:
        self._read = read

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self._read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


class Discard(io.RawIOBase):
    """A spool for a file that is already on disk whole: keeps nothing."""

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        return len(data)


def new_spool() -> io.BufferedRandom:
    # Memory up to 1 MiB, then a file in the temp dir: constant memory whatever the size.
    return tempfile.SpooledTemporaryFile(max_size=1024 * 1024)  # type: ignore[return-value]


def stage_file(
    pg: psycopg.Cursor,
    imp: ScheduledImport,
    raw: io.RawIOBase,
    reporter: ProgressReporter,
    counts: RunCounts,
    downloaded: IO[bytes] | None = None,
) -> Layout | None:
    """Stage every row of the file; None for a file without rows or header (nothing to do).

    `downloaded` is the whole file already on disk (what `raw` reads): a file COPY rejects is
    then read again from there instead of being spooled a second time.
    """
    prefix, end = read_prefix(raw.read, delimiter_bytes(imp))
    refuse_a_utf8_mark(prefix, imp)
    if prefix.startswith(BOM) and codec_name(imp.encoding) == "utf-8":
        # Before the empty file's check: a file of a byte-order mark alone is empty.
        prefix = prefix[len(BOM) :]
        end = end - len(BOM) if end is not None else None
    if not prefix.strip():
        if imp.has_header:
            raise PermanentImportError("the file is empty: it has no header row")
        return None
    sniff(prefix)
    first_record = prefix[:end] if end is not None else prefix
    layout = layout_for(parse_first_record(first_record, imp), imp)
    header_lines = line_breaks(first_record) if imp.has_header else 0
    data = prefix[len(first_record) :] if imp.has_header else prefix

    def report(rows: int) -> None:
        counts.rows_read = rows
        reporter.report()

    refusal = stage_copy.fast_path_refusal(imp, first_record)
    with new_spool() if downloaded is None else Discard() as spool:
        spool.write(prefix)
        if not refusal:
            first_line = header_lines + 1
            use_raw_table(pg, raw_table(pg, layout, first_line, escaped=False), first_line)
            try:
                staged = stage_copy.copy_raw(
                    pg,
                    layout,
                    imp,
                    data,
                    raw.read,
                    spool,
                    reporter.due,
                    report,
                    first_line=header_lines + 1,
                )
            except stage_copy.CopyRejected as rejected:
                refusal = f"COPY rejected the file ({rejected})"
            else:
                _settle_fast_path(pg, layout, staged)
                counts.rows_read = staged.rows
                return layout
        logger.info("import %s: parsing in Python: %s", imp.pk, refusal)
        use_raw_table(pg, raw_table(pg, layout, 1, escaped=True), 1)
        if downloaded is not None:
            downloaded.seek(0)
            source = Feed(downloaded.read)
        else:
            spool.seek(0)
            # The spool holds what was read so far; the rest still comes from the download.
            source = Feed(lambda size: spool.read(size) or raw.read(size))
        staged = copy_parsed(pg, layout, imp, source, reporter.due, report)
        counts.rows_read = staged.rows
    return layout


def raw_table(pg: psycopg.Cursor, layout: Layout, first_line: int, *, escaped: bool) -> sql.SQL:
    """create_raw_table's statement, composed once per layout, first line and way of hashing
    (rendered)."""
    key = ("raw", layout.key, first_line, escaped)
    return rendered(pg, key, lambda: create_raw_table(layout, first_line, escaped=escaped))


def joined_in_pairs(fields: list[sql.Composable]) -> sql.Composable:
    """The fields joined by chr(31), two by two, then those two by two: the same text as one
    chain of `||`, which copied what it had joined so far at each step (time of the square of
    the width: 12 s of staging at 1,500 columns). Not concat_ws: a generated column takes
    immutable functions only, and concat_ws is stable."""
    if not fields:
        return sql.SQL("''")
    while len(fields) > 1:
        fields = [
            sql.SQL("({} || chr(31) || {})").format(*fields[i : i + 2])
            if i + 1 < len(fields)
            else fields[i]
            for i in range(0, len(fields), 2)
        ]
    return fields[0]


def hashed_field(column: sql.Composable, *, escaped: bool = True) -> sql.Composed:
    """A field as the row's hash reads it: its text, with chr(31), which joins the fields, and
    chr(29), which escapes it, escaped (chr(29) doubled, chr(31) as chr(29) 'u').

    Joined unescaped, `x<US>y`,`z` and `x`,`y<US>z` (a unit separator inside a multi-valued
    cell, moved) hashed alike: the changed row was counted unchanged and never landed. A field
    holding neither character is its own text, so the hashes records keep stay theirs, and
    the fast path, which hands the Python path every file that holds either character
    (stage_copy.CopyMisreads), leaves the escaping out (`escaped` off): its two replace()
    a field cost a million rows of ten columns 0.5 to 0.9 s.
    """
    if not escaped:
        return sql.SQL("coalesce({}, '')").format(column)
    return sql.SQL(
        "replace(replace(coalesce({}, ''), chr(29), chr(29) || chr(29)), chr(31), chr(29) || 'u')"
    ).format(column)


def create_raw_table(layout: Layout, first_line: int, *, escaped: bool = True) -> sql.Composed:
    """The staging table. `key` and `content_hash` are generated while COPY writes the rows.

    The hash covers the raw text of every field (hashed_field) and the layout's signature, so
    an unchanged re-import compares hashes without building a single JSONB value; NULL (an
    unquoted empty field in COPY's CSV) and '' (the Python parser's empty field) hash alike.
    `line` takes its numbers from the sequence a thousand at a time (only this session writes
    the table, so they stay consecutive): one sequence call per row cost 0.25 s a million rows.
    """
    columns = [sql.SQL("{} text").format(layout.col(i)) for i in range(layout.width)]
    fields = [hashed_field(layout.col(i), escaped=escaped) for i in range(layout.width)]
    joined = joined_in_pairs(fields)
    return sql.SQL(
        "CREATE TEMP TABLE {raw} ("
        " line bigint GENERATED BY DEFAULT AS IDENTITY (START WITH {first} CACHE 1000),"
        " problem text,"
        " {columns},"
        " key text GENERATED ALWAYS AS ({key}) STORED,"
        " content_hash bigint GENERATED ALWAYS AS"
        "  (hashtextextended({signature} || chr(30) || {joined}, 0)) STORED"
        ")"
    ).format(
        raw=sql.Identifier(RAW),
        first=lit(first_line),
        columns=sql.SQL(", ").join(columns),
        key=trimmed(layout.col(layout.key_index)),
        signature=lit(layout.signature),
        joined=joined,
    )


def _settle_fast_path(pg: psycopg.Cursor, layout: Layout, staged: Staged) -> None:
    """Fix what COPY cannot know: line numbers after multi-line fields, blank lines."""
    physical_lines = staged.line_feeds + 1 if staged.rows else 0
    if physical_lines != staged.rows or staged.lone_returns:
        pg.execute(renumber_lines(layout))
        # Rows span lines, so LineGuard's check of each line did not bound a row.
        pg.execute(first_long_row(layout, max_field_bytes()))
        if (line := pg.fetchone()[0]) is not None:
            raise too_long(f"the row starting on line {line}")
    if layout.width == 1:
        # One column: COPY reads a blank line as a NULL row, the csv module skips it.
        pg.execute(sql.SQL("DELETE FROM {} WHERE c1 IS NULL").format(sql.Identifier(RAW)))
        staged.rows -= pg.rowcount


def renumber_lines(layout: Layout) -> sql.Composed:
    """Fast path only: a quoted field spanning lines shifts the line of every later row.

    COPY numbers rows, not lines; each row's line is its number plus the line breaks inside
    the fields of the rows before it. Only run when the file's line count says it is needed.
    """
    # A CR LF is one break, a lone CR or LF one each: the field's length with each CR LF made
    # one character, less its length without any CR or LF. Not regexp_count (PostgreSQL 15 and
    # later: on 14 every file with a quoted line break failed), and 3.5x faster than it.
    breaks = sql.SQL(" + ").join(
        sql.SQL(
            "coalesce(length(replace({c}, chr(13) || chr(10), chr(10)))"
            " - length(translate({c}, chr(13) || chr(10), '')), 0)"
        ).format(c=layout.col(i))
        for i in range(layout.width)
    )
    return sql.SQL(
        "UPDATE {raw} r SET line = r.line + s.shift FROM ("
        " SELECT line, coalesce(sum(breaks) OVER (ORDER BY line"
        "   ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS shift"
        " FROM (SELECT line, {breaks} AS breaks FROM {raw}) b"
        ") s WHERE r.line = s.line AND s.shift > 0"
    ).format(raw=sql.Identifier(RAW), breaks=breaks)


def first_long_row(layout: Layout, limit: int) -> sql.Composed:
    """The line of the first staged row whose fields hold more than `limit` bytes, or NULL."""
    size = sql.SQL(" + ").join(
        sql.SQL("coalesce(octet_length({}), 0)").format(layout.col(i)) for i in range(layout.width)
    )
    return sql.SQL("SELECT min(line) FROM {raw} WHERE {size} > {limit}").format(
        raw=sql.Identifier(RAW), size=size, limit=lit(limit)
    )
