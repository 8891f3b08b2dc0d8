"""Staging, fast path: the raw bytes of the file go to COPY as they are downloaded.

Python parses nothing here: it counts line breaks and quote characters, which `bytes.count`
does at memory speed, to cut the stream into several COPY statements (progress is written
between them) and to know whether fields span lines. Every byte is also written to the spool,
so that a file COPY rejects can be staged again by the Python path (`stage_python`).
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from contextlib import ExitStack, suppress

import psycopg
from django.db import DatabaseError, DataError, connection, transaction
from psycopg import sql

from schedules.models import ScheduledImport

from .first_record import (
    CHUNK_BYTES,
    QUOTE,
    Layout,
    QuoteCheck,
    codec_name,
    delimiter_bytes,
    max_field_bytes,
    stray_quote,
    too_long,
)
from .tables import RAW, Staged, lit, rendered

# Python codec name -> PostgreSQL COPY ENCODING. Others (UTF-16, ...) take the Python path.
PG_ENCODINGS = {
    "utf-8": "UTF8",
    "latin-1": "LATIN1",
    "iso8859-1": "LATIN1",
    "iso8859-2": "LATIN2",
    "iso8859-15": "LATIN9",
    "cp1250": "WIN1250",
    "cp1251": "WIN1251",
    "cp1252": "WIN1252",
    "koi8-r": "KOI8R",
}


def fast_path_refusal(imp: ScheduledImport, first_record: bytes) -> str:
    """Why COPY cannot read this file as is ('' when it can)."""
    if codec_name(imp.encoding) not in PG_ENCODINGS:
        return f"encoding {imp.encoding} is not one COPY reads"
    delimiter = delimiter_bytes(imp)
    if len(delimiter) != 1 or delimiter in b'"\r\n\\' or not delimiter.isascii():
        return f"delimiter {imp.delimiter!r} is not one COPY takes"
    header = first_record.strip(b"\r\n")  # (blank lines before it are skipped)
    cr_alone = first_record.endswith(b"\r") or first_record.endswith(b"\r\r\n")
    if b"\r" in header or cr_alone:
        # Old Mac line ends (CR alone): COPY would see one long line.
        return "the file does not end its lines with LF or CRLF"
    if stray_quote(first_record, delimiter):
        return f"{STRAY_QUOTE} in the header"
    return ""


# What COPY reads otherwise than the csv module: the Python path reads such a file.
STRAY_QUOTE = "a quote character that neither opens nor closes a quoted field"
END_OF_DATA = "a line holding only \\. (COPY's end-of-data marker: it would drop every later row)"
# The characters that join a row's fields, and escape them, in the text its hash reads
# (stage.hashed_field): a file holding either is hashed by the Python path's staging table.
HASH_SEPARATORS = "a unit separator (U+001F) or a group separator (U+001D)"
# A line that is only `\.`, as the blocks COPY is given hold it (data starts a line).
END_OF_DATA_LINE = re.compile(rb"\n\\\.\r?\n")


class CopyMisreads:
    """Refuses, block by block before COPY gets them, a file COPY would read otherwise than
    the csv module, so that the Python path reads it (stage.stage_file) and both paths give
    one reading of every file:

    - a stray quote (first_record.QuoteCheck): COPY joined the rows up to the next quote into
      one field (`A,5" screen,10` took the next row's fields, and the next row was gone) or
      dropped the quotes, where the csv module keeps the text as it is;
    - a line that is only `\\.`: COPY takes it for the end of the data and silently drops every
      row after it, where the csv module reports it as a bad row.

    Either made the fast path import fewer rows than the file holds and call the run a
    success; with `mode: sync` the rows it lost were deleted. A file that holds a U+001F or
    U+001D byte goes to the Python path too: the fast path's table hashes the fields joined as
    they are, the Python path's escaped (stage.hashed_field). `OVERLAP` bytes of one block
    are looked at again with the next, so that a pattern across two blocks is found.
    """

    OVERLAP = 4

    def __init__(self, delimiter: bytes) -> None:
        self.quote_check = QuoteCheck(delimiter)
        self.tail = b"\n"  # the data begins a line

    def feed(self, block: bytes) -> None:
        if not self.quote_check.feed(block):
            raise CopyRejected(STRAY_QUOTE)
        if b"\x1f" in block or b"\x1d" in block:
            raise CopyRejected(HASH_SEPARATORS)
        window = self.tail + block
        if b"\\." in window and END_OF_DATA_LINE.search(window):
            raise CopyRejected(END_OF_DATA)
        self.tail = window[-self.OVERLAP :]

    @property
    def quotes(self) -> int:
        """The quote characters fed so far: an even count means "outside quotes"."""
        return self.quote_check.quotes

    def finish(self) -> None:
        """At the end of the data, which ends its last line."""
        if not self.quote_check.finish():
            raise CopyRejected(STRAY_QUOTE)
        if END_OF_DATA_LINE.search(self.tail + b"\n"):
            raise CopyRejected(END_OF_DATA)


class CopyRejected(Exception):
    """COPY refused the file (a row with the wrong width, a bad byte, broken quoting)."""


class LineGuard:
    """Refuses a physical line longer than MAX_FIELD_BYTES in a stream of blocks.

    COPY would take it (and PostgreSQL would hold it), but the same file must not pass here and
    fail on the Python path. `bytes.find` keeps it at memory speed; lines are split only when
    a block is longer than the limit (a limit below the 256 KiB block size).
    """

    def __init__(self, first_line: int) -> None:
        self.limit = max_field_bytes()
        self.line = first_line  # the physical line the current one is
        self.run = 0  # bytes of the current line seen so far

    def feed(self, block: bytes) -> None:
        first = block.find(b"\n")
        if first == -1:
            self.run += len(block)
            self._check(self.run, self.line)
            return
        self._check(self.run + first, self.line)
        last = block.rfind(b"\n")
        if last > first and len(block) > self.limit:
            inner = block[first + 1 : last].split(b"\n")
            for offset, line in enumerate(inner, 1):
                self._check(len(line), self.line + offset)
        self.line += block.count(b"\n")
        self.run = len(block) - last - 1
        self._check(self.run, self.line)

    def _check(self, length: int, line: int) -> None:
        if length > self.limit:
            raise too_long(f"line {line}")


def copy_raw_csv(layout: Layout, delimiter: str, pg_encoding: str) -> sql.Composed:
    columns = sql.SQL(", ").join(layout.col(i) for i in range(layout.width))
    return sql.SQL(
        "COPY {raw} ({columns}) FROM STDIN (FORMAT csv, DELIMITER {delimiter}, ENCODING {enc})"
    ).format(
        raw=sql.Identifier(RAW),
        columns=columns,
        delimiter=lit(delimiter),
        enc=lit(pg_encoding),
    )


def copy_raw(
    pg: psycopg.Cursor,
    layout: Layout,
    imp: ScheduledImport,
    data: bytes,
    read: Callable[[int], bytes],
    spool: io.IOBase,
    due: Callable[[], bool],
    report: Callable[[int], None],
    first_line: int = 1,
) -> Staged:
    """COPY the raw bytes (`data`, then `read()` until EOF) into the staging table.

    The stream is cut into several COPY statements at line breaks outside quotes whenever
    progress is due, so progress can be written to the run row between them on this same
    connection; each statement is its own transaction (a savepoint inside a caller's), so the
    progress is visible at once and a rejected statement leaves the connection usable. Outside
    a transaction the COPY commits by itself (autocommit), as every other statement of a run's
    steps does: a transaction around it cost a small run two round trips, BEGIN and COMMIT.
    Trailing blank lines are held back: COPY would take them for rows with too few fields.
    Raises CopyRejected, after spooling the rest of the download, when COPY refuses a row.
    `first_line` is the file's line number of the first byte of `data` (for LineGuard).
    """
    encoding = PG_ENCODINGS[codec_name(imp.encoding)]
    statement = rendered(
        pg,
        ("copy", layout.width, imp.delimiter, encoding),
        lambda: copy_raw_csv(layout, imp.delimiter, encoding),
    )
    staged = Staged()
    held = bytearray()
    segment: ExitStack | None = None
    copy = None
    guard = LineGuard(first_line)
    misreads = CopyMisreads(delimiter_bytes(imp))

    def write(block: bytes) -> None:
        nonlocal segment, copy
        if not block:
            return
        guard.feed(block)
        misreads.feed(block)
        if segment is None:
            segment = ExitStack()
            if connection.in_atomic_block:
                segment.enter_context(transaction.atomic())
            copy = segment.enter_context(pg.copy(statement))
        copy.write(block)
        staged.line_feeds += block.count(b"\n")
        if b"\r" in block:
            staged.lone_returns += block.count(b"\r") - block.count(b"\r\n")

    def close() -> None:
        nonlocal segment, copy
        if segment is not None:
            current, segment, copy = segment, None, None
            current.close()
            staged.rows += pg.rowcount

    try:
        block = data
        while True:
            if not block.strip(b"\r\n"):
                # Blank lines only: held back with the rest, without reading the run of them
                # held so far again. Prepended to each block and scanned whole, a long run of
                # blank lines took time of the square of its length (80 MB: 75 s).
                held += block
                block = read(CHUNK_BYTES)
                if not block:
                    break
                spool.write(block)
                continue
            if len(held) > CHUNK_BYTES:
                # A long run of blank lines, not the file's last: to COPY a block at a time,
                # not joined to the next block in one copy of it all.
                held = _write_in_blocks(held, write)
            block = bytes(held) + block
            body = block.rstrip(b"\r\n")
            held = bytearray(block[len(body) :])
            if body and due():
                cut = _cut_point(body, misreads.quotes)
                if cut:
                    write(body[:cut])
                    close()
                    report(staged.rows)
                    body = body[cut:]
            write(body)
            block = read(CHUNK_BYTES)
            if not block:
                break
            spool.write(block)
        misreads.finish()
        close()
    except BaseException as error:
        if segment is not None:
            # Whatever stopped the COPY (a refused row, a download that broke off, a lost
            # connection): end it and roll back its transaction (or savepoint). Left open, the
            # connection stays in COPY mode, and Django inside an atomic block, so the next
            # query on it would wait forever.
            with suppress(psycopg.Error, DatabaseError):
                segment.__exit__(type(error), error, error.__traceback__)
        if not isinstance(error, psycopg.errors.DataError | DataError | CopyRejected):
            raise
        while chunk := read(CHUNK_BYTES):
            spool.write(chunk)
        if isinstance(error, CopyRejected):
            raise
        raise CopyRejected(str(error).splitlines()[0]) from error
    return staged


def _write_in_blocks(held: bytearray, write) -> bytearray:
    """Write `held` (line breaks) a block at a time, never between a CR and its LF; the rest,
    less than a block, is returned to go with the next block."""
    start = 0
    while len(held) - start > CHUNK_BYTES:
        end = start + CHUNK_BYTES
        if held[end - 1] == 0x0D:  # keep "\r\n" together: a lone CR counts as a line of its own
            end += 1
        write(bytes(held[start:end]))
        start = end
    return held[start:]


def _cut_point(body: bytes, quotes_before: int) -> int:
    """An offset just after a line break of `body` that lies outside quotes, or 0."""
    end = len(body)
    for _ in range(8):
        newline = body.rfind(b"\n", 0, end)
        if newline == -1:
            return 0
        if (quotes_before + body.count(QUOTE, 0, newline)) % 2 == 0:
            return newline + 1
        end = newline
    return 0
