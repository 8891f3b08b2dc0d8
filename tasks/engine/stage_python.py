"""Staging, the fallback: the csv module parses the file and COPY takes its rows.

Used for a file COPY rejected (a row with the wrong number of fields, a byte not in the
encoding, broken quoting) and for encodings, delimiters and line ends COPY does not take. It
stages the good rows and marks the bad ones, with exact line numbers.
"""

from __future__ import annotations

import csv
import io
import itertools
from collections.abc import Callable, Iterator

import psycopg
from django.db import transaction
from psycopg import sql

from schedules.models import ScheduledImport

from ..errors import PermanentImportError
from . import csv_reading
from .first_record import Layout, codec_name, max_field_bytes, too_long
from .tables import RAW, Staged

PYTHON_BATCH_ROWS = 20_000


def copy_parsed_rows(layout: Layout) -> sql.Composed:
    columns = sql.SQL(", ").join(layout.col(i) for i in range(layout.width))
    return sql.SQL("COPY {raw} (line, problem, {columns}) FROM STDIN").format(
        raw=sql.Identifier(RAW), columns=columns
    )


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


def parse_rows(text: io.TextIOBase, layout: Layout, imp: ScheduledImport) -> Iterator[tuple]:
    """Yield (line, problem, *fields) for every data row; blank lines are skipped.

    A row with the wrong number of fields is reported and nothing of it is written; its
    columns hold the keys it may name (`possible_keys`), so that mode sync keeps their records.
    """
    lines = CheckedLines(text, imp.encoding)
    reader = csv_reading.reader(lines, imp.delimiter, lines.limit, strict=True)
    width = layout.width
    try:
        if imp.has_header:
            # The first row that is not blank (blank lines before the header are skipped).
            next((header for header in reader if header), None)
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
            row = possible_keys(fields, layout, imp.delimiter)
            yield (line, f"expected {width} fields, found {len(fields)}", *row)
    except csv.Error as error:
        where = csv_reading.plain(error, reader.line_num, lines.row_line)
        raise PermanentImportError(f"the file is not a valid CSV: {where}") from error


def possible_keys(fields: list[str], layout: Layout, delimiter: str) -> list[str | None]:
    """The staged columns of a row with the wrong number of fields: the keys it may name.

    Where its key is cannot be known: an unquoted delimiter (`Smith, John,A-1`) or a lost field
    before the key shifts it, one after the key does not. The key's column holds the field at
    the key's position (as the repeated-key search reads it); the other columns hold the other
    readings, the likeliest first: the key's position counted from the row's end (a stray
    delimiter or a lost field before the key), the fields the key's position spans when the
    stray delimiters are inside the key, then the row's other fields. Mode sync keeps the
    record of every one of them (merge.delete_absent): the key of a row at the key's position
    only, taken from a piece of another field, deleted the record the row was meant to update.
    A one-column file's row of several fields is one value with unquoted delimiters.
    """
    width, key_index, count = layout.width, layout.key_index, len(fields)
    if width == 1:
        return [delimiter.join(fields)]
    key = fields[key_index] if key_index < count else None
    readings: list[str] = []
    if key_index > 0 and count - width + key_index >= 0:
        readings.append(fields[count - width + key_index])
    if count > width:
        readings.append(delimiter.join(fields[key_index : key_index + count - width + 1]))
    others: list[str | None] = []
    seen = {key}
    for reading in itertools.chain(readings, fields):
        if len(others) == width - 1:
            break
        if reading not in seen:
            seen.add(reading)
            others.append(reading)
    others += [None] * (width - 1 - len(others))
    return [*others[:key_index], key, *others[key_index:]]


def copy_parsed(
    pg: psycopg.Cursor,
    layout: Layout,
    imp: ScheduledImport,
    raw: io.RawIOBase,
    due: Callable[[], bool],
    report: Callable[[int], None],
) -> Staged:
    """Parse the file in Python and COPY its rows, a batch per statement."""
    staged = Staged(path="python")
    statement = copy_parsed_rows(layout)
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
