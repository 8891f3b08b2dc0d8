"""Getting a file's rows into the staging table: the COPY fast path and the Python fallback.

Fast path: the downloaded bytes go to PostgreSQL untouched (`COPY ... FORMAT csv`), so Python
never parses, encodes or hashes a row; it only counts line breaks and quote characters, which
`bytes.count` does at memory speed. COPY, however, aborts at the first row with the wrong number
of fields or an undecodable byte, and such a file deserves a report of its bad rows, not a
failure. So every downloaded byte is also spooled to a temporary file (disk, not memory), and a
file COPY rejects is staged again from the spool by the Python path, which parses it with the
csv module and reports bad rows with their line numbers.
"""

from __future__ import annotations

import codecs
import csv
import io
import tempfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack, suppress
from dataclasses import dataclass

import psycopg
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import DatabaseError, DataError, transaction

from schedules.models import ScheduledImport
from schedules.validation import validate_encoding

from ..errors import PermanentImportError
from . import validate as q

CHUNK_BYTES = 256 * 1024
PYTHON_BATCH_ROWS = 20_000
BOM = codecs.BOM_UTF8
QUOTE = b'"'

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
# PostgreSQL's limit of columns a table; the staging table adds line, problem, key and hash.
MAX_TABLE_COLUMNS = 1600
MAX_FILE_COLUMNS = MAX_TABLE_COLUMNS - 4
NOT_CSV_PREFIXES = (b"<!doctype", b"<html", b"<?xml", b"<head", b"<body", b"{", b"[")


@dataclass
class Staged:
    """What staging learned about the file."""

    rows: int = 0
    line_feeds: int = 0  # written by the fast path; tells whether fields span lines
    path: str = "copy"  # "copy" or "python" (the fallback)


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


def max_field_bytes() -> int:
    """The longest line, row or field a file may hold (MAX_FIELD_BYTES).

    It bounds what the importer holds in memory at once: one line on the fast path (the
    header), one row on the Python path, whose csv module keeps a whole row, and a line
    without an end could otherwise grow to the whole file (a 200 MB one cost 1.5 GB).
    """
    return settings.MAX_FIELD_BYTES


def too_long(what: str) -> PermanentImportError:
    return PermanentImportError(
        f"{what} is longer than the {max_field_bytes()}-byte limit (MAX_FIELD_BYTES); "
        f"is this a CSV?"
    )


def codec_name(encoding: str) -> str:
    try:
        validate_encoding(encoding)  # saved before the rule existed: `base64`, `rot13`, ...
    except ValidationError as error:
        raise PermanentImportError(error.messages[0]) from None
    return codecs.lookup(encoding).name


# --- the first record -------------------------------------------------------------------------


def first_record_end(data: bytes) -> int | None:
    """Offset just past the first line break outside quotes, or None if there is none yet."""
    start = 0
    while (newline := data.find(b"\n", start)) != -1:
        if data.count(QUOTE, 0, newline) % 2 == 0:
            return newline + 1
        start = newline + 1
    return None


def read_prefix(read: Callable[[int], bytes]) -> tuple[bytes, int | None]:
    """Read until the first record is complete (or the file ends); return it and its end."""
    prefix = b""
    while True:
        chunk = read(CHUNK_BYTES)
        prefix += chunk
        end = first_record_end(prefix)
        if end is not None or not chunk:
            return prefix, end
        if len(prefix) > max_field_bytes():
            raise too_long("the first line")


def sniff(prefix: bytes) -> None:
    """Refuse what is clearly not a CSV before COPY or the parser make less helpful errors."""
    head = prefix[:8192]
    if b"\x00" in head:
        raise PermanentImportError("the file is not a CSV: it holds binary data")
    if head.lstrip().lower().startswith(NOT_CSV_PREFIXES):
        raise PermanentImportError("the file is not a CSV (it looks like HTML, XML or JSON)")


def parse_first_record(data: bytes, imp: ScheduledImport) -> list[str]:
    try:
        text = data.decode(codec_name(imp.encoding))
    except UnicodeDecodeError as error:
        raise PermanentImportError(
            f"the file is not valid {imp.encoding} on line 1 ({error.reason}); "
            f"set the import's encoding"
        ) from error
    try:
        return next(csv.reader(io.StringIO(text, newline=""), delimiter=imp.delimiter), [])
    except csv.Error as error:
        raise PermanentImportError(f"the file is not a valid CSV on line 1: {error}") from error


def layout_for(first: list[str], imp: ScheduledImport) -> q.Layout:
    """Column names (the header, the columns spec, or column_1..N), checked against the import."""
    spec = {c["name"]: c for c in imp.columns or []}
    if imp.has_header:
        names = [name.strip() for name in first]
        if problems := header_problems(names):
            if len(spec) != len(names):
                raise PermanentImportError(
                    f"the header {problems}: a record would not match its row; rename the "
                    f"columns in the file, or name every column, in order, in the import's "
                    f"columns spec"
                )
            # The spec names every column (in the file's order): it stands in for the header.
            names = list(spec)
    else:
        names = list(spec) or [f"column_{i}" for i in range(1, len(first) + 1)]
    if len(names) > MAX_FILE_COLUMNS:
        raise PermanentImportError(
            f"the file has {len(names)} columns; an import takes at most {MAX_FILE_COLUMNS} "
            f"(PostgreSQL's limit is {MAX_TABLE_COLUMNS} columns a table, and staging uses 4)"
        )
    try:
        key_index = names.index(imp.key_column)
    except ValueError:
        shown = ", ".join(names[:20]) + (" …" if len(names) > 20 else "")
        raise PermanentImportError(
            f"the key column {imp.key_column!r} is not in the file's columns ({shown})"
        ) from None
    missing = [n for n, c in spec.items() if c.get("required") and n not in names]
    if missing:
        raise PermanentImportError(
            f"required column(s) {', '.join(map(repr, missing))} not in the file's columns"
        )
    return q.Layout(names=names, key_index=key_index, key_column=imp.key_column, spec=spec)


def header_problems(names: list[str]) -> str:
    """What is wrong with a header's names ('' when nothing): repeated and empty names.

    A record is a JSON object keyed by column name: `id,id` would keep one value of two under
    a key that may not be the one the row was keyed by.
    """
    positions: dict[str, list[int]] = {}
    for number, name in enumerate(names, 1):
        positions.setdefault(name, []).append(number)
    problems = [
        f"repeats {name!r} (columns {', '.join(map(str, numbers))})"
        for name, numbers in positions.items()
        if name and len(numbers) > 1
    ]
    if empty := positions.get(""):
        shown = ", ".join(map(str, empty[:10])) + (" …" if len(empty) > 10 else "")
        problems.append(f"has no name for column{'s' if len(empty) > 1 else ''} {shown}")
    if len(problems) > 5:
        problems = [*problems[:5], f"and {len(problems) - 5} more"]
    return "; ".join(problems)


def fast_path_refusal(imp: ScheduledImport, first_record: bytes) -> str:
    """Why COPY cannot read this file as is ('' when it can)."""
    if codec_name(imp.encoding) not in PG_ENCODINGS:
        return f"encoding {imp.encoding} is not one COPY reads"
    delimiter = imp.delimiter.encode(codec_name(imp.encoding), errors="replace")
    if len(delimiter) != 1 or delimiter in b'"\r\n\\' or not delimiter.isascii():
        return f"delimiter {imp.delimiter!r} is not one COPY takes"
    if b"\r" in first_record.rstrip(b"\r\n") or first_record.endswith(b"\r\r\n"):
        # Old Mac line ends (CR alone): COPY would see one long line.
        return "the file does not end its lines with LF or CRLF"
    return ""


# --- fast path --------------------------------------------------------------------------------


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


def copy_raw(
    pg: psycopg.Cursor,
    layout: q.Layout,
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
    progress is visible at once and a rejected statement leaves the connection usable.
    Trailing blank lines are held back: COPY would take them for rows with too few fields.
    Raises CopyRejected, after spooling the rest of the download, when COPY refuses a row.
    `first_line` is the file's line number of the first byte of `data` (for LineGuard).
    """
    statement = q.copy_raw_csv(layout, imp.delimiter, PG_ENCODINGS[codec_name(imp.encoding)])
    staged = Staged()
    quotes = 0  # quote characters written so far: an even count means "outside quotes"
    held = b""
    segment: ExitStack | None = None
    copy = None
    guard = LineGuard(first_line)

    def write(block: bytes) -> None:
        nonlocal quotes, segment, copy
        if not block:
            return
        guard.feed(block)
        if segment is None:
            segment = ExitStack()
            segment.enter_context(transaction.atomic())
            copy = segment.enter_context(pg.copy(statement))
        copy.write(block)
        staged.line_feeds += block.count(b"\n")
        quotes += block.count(QUOTE)

    def close() -> None:
        nonlocal segment, copy
        if segment is not None:
            current, segment, copy = segment, None, None
            current.close()
            staged.rows += pg.rowcount

    try:
        block = data
        while True:
            block = held + block
            body = block.rstrip(b"\r\n")
            held = block[len(body) :]
            if body and due():
                cut = _cut_point(body, quotes)
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
        close()
    except BaseException as error:
        if segment is not None:
            # Whatever stopped the COPY (a refused row, a download that broke off, a lost
            # connection): end it and roll back its transaction (or savepoint). Left open, the
            # connection stays in COPY mode, and Django inside an atomic block, so the next
            # query on it would wait forever.
            with suppress(psycopg.Error, DatabaseError):
                segment.__exit__(type(error), error, error.__traceback__)
        if not isinstance(error, psycopg.errors.DataError | DataError):
            raise
        while chunk := read(CHUNK_BYTES):
            spool.write(chunk)
        raise CopyRejected(str(error).splitlines()[0]) from error
    return staged


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


# --- Python path ------------------------------------------------------------------------------


def text_stream(raw: io.RawIOBase, encoding: str) -> io.TextIOWrapper:
    """Decoded text; bytes not in the encoding become lone surrogates, caught per line below."""
    # utf-8-sig drops a BOM when there is one and reads plain UTF-8 otherwise.
    if codec_name(encoding) == "utf-8":
        encoding = "utf-8-sig"
    return io.TextIOWrapper(
        io.BufferedReader(raw, 1024 * 1024),
        encoding=encoding,
        errors="surrogateescape",
        newline="",
    )


class CheckedLines:
    """The file's physical lines; the first holding an undecodable or a NUL byte fails the file,
    and so does a line, or a row of several lines, longer than MAX_FIELD_BYTES.

    TextIOWrapper decodes a megabyte ahead of the parser, so its own error could not say
    where the bad byte is; a surrogate left in a line can. Lines are read with a limit, so a
    line that never ends is refused after MAX_FIELD_BYTES characters, not held whole. The
    parser calls `row_done()` after each row: a row counts every line it took.
    """

    def __init__(self, text: io.TextIOBase, encoding: str) -> None:
        self.text = text
        self.encoding = encoding
        self.limit = max_field_bytes()
        self.row_chars = 0
        self.row_line = 1

    def row_done(self, next_line: int) -> None:
        self.row_chars = 0
        self.row_line = next_line

    def __iter__(self) -> Iterator[str]:
        number = 0
        # A character is at least a byte: more characters than the limit is over it.
        while line := self.text.readline(self.limit + 1):
            number += 1
            self.row_chars += len(line)
            if self.row_chars > self.limit:
                what = (
                    f"line {number}"
                    if number == self.row_line
                    else (f"the row starting on line {self.row_line}")
                )
                raise too_long(what)
            yield self._checked(line, number)

    def _checked(self, line: str, number: int) -> str:
        encoding = self.encoding
        if "\x00" in line:
            # Python 3.11's csv reads NUL, PostgreSQL text cannot hold it: no CSV has one.
            raise PermanentImportError(
                f"the file is not a CSV: it holds binary data (a NUL byte on line {number})"
            )
        if not line.isascii():
            try:
                line.encode("utf-8")
            except UnicodeEncodeError:
                raise PermanentImportError(
                    f"the file is not valid {encoding} near line {number} (a byte that is not "
                    f"{encoding}); set the import's encoding"
                ) from None
        return line


def parse_rows(text: io.TextIOBase, layout: q.Layout, imp: ScheduledImport) -> Iterator[tuple]:
    """Yield (line, problem, *fields) for every data row; blank lines are skipped.

    A row with the wrong number of fields keeps only its key (if it has one): it is reported,
    and in mode sync its record is kept, but nothing of it is written.
    """
    lines = CheckedLines(text, imp.encoding)
    # The csv module's own limit (a process-wide setting) to match: its default, 128 KiB, is
    # below what real files hold in one cell.
    csv.field_size_limit(lines.limit)
    reader = csv.reader(lines, delimiter=imp.delimiter, strict=True)
    width = layout.width
    empty = (None,) * width
    try:
        if imp.has_header:
            next(reader, None)
            lines.row_done(reader.line_num + 1)
        previous = reader.line_num
        for fields in reader:
            line = previous + 1
            previous = reader.line_num
            lines.row_done(previous + 1)
            if not fields:
                continue
            if len(fields) == width:
                yield (line, None, *fields)
                continue
            row = list(empty)
            if layout.key_index < len(fields):
                row[layout.key_index] = fields[layout.key_index]
            yield (line, f"expected {width} fields, found {len(fields)}", *row)
    except csv.Error as error:
        if "NUL" in str(error) or "null byte" in str(error):
            raise PermanentImportError("the file is not a CSV: it holds binary data") from error
        raise PermanentImportError(
            f"the file is not a valid CSV near line {reader.line_num}: {error}"
        ) from error


def copy_parsed(
    pg: psycopg.Cursor,
    layout: q.Layout,
    imp: ScheduledImport,
    raw: io.RawIOBase,
    due: Callable[[], bool],
    report: Callable[[int], None],
) -> Staged:
    """Parse the file in Python and COPY its rows, a batch per statement."""
    staged = Staged(path="python")
    statement = q.copy_parsed_rows(layout)
    rows = parse_rows(text_stream(raw, imp.encoding), layout, imp)
    done = False
    while not done:
        done = True
        # A savepoint in a caller's transaction: a file that fails mid-batch leaves it usable.
        with transaction.atomic(), pg.copy(statement) as copy:
            for count, row in enumerate(rows, 1):
                copy.write_row(row)
                staged.rows += 1
                if count >= PYTHON_BATCH_ROWS:
                    done = False
                    break
        if due():
            report(staged.rows)
    return staged


class Discard(io.RawIOBase):
    """A spool for a file that is already on disk whole: keeps nothing."""

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        return len(data)


def new_spool() -> io.BufferedRandom:
    # Memory up to 1 MiB, then a file in the temp dir: constant memory whatever the size.
    return tempfile.SpooledTemporaryFile(max_size=1024 * 1024)  # type: ignore[return-value]
