"""Step 2, the first record: what the file's columns are, before a row is staged.

The first record is parsed in Python: it names the columns (or gives their number), is checked
for the key column and the required ones, and a file that is obviously not CSV is refused here,
before COPY or the parser make less helpful errors. The admin's Test source reads a file's
start with the same functions.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field

from django.conf import settings
from django.core.exceptions import ValidationError
from psycopg import sql

from schedules.models import ScheduledImport
from schedules.validation import validate_encoding

from ..errors import PermanentImportError
from . import csv_reading

CHUNK_BYTES = 256 * 1024


BOM = codecs.BOM_UTF8


QUOTE = b'"'


# PostgreSQL's limit of columns a table; the staging table adds line, problem, key and hash.
MAX_TABLE_COLUMNS = 1600


MAX_FILE_COLUMNS = MAX_TABLE_COLUMNS - 4


NOT_CSV_PREFIXES = (b"<!doctype", b"<html", b"<?xml", b"<head", b"<body", b"{", b"[")


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
    rows = csv_reading.reader(io.StringIO(text, newline=""), imp.delimiter, max_field_bytes())
    try:
        return next(rows, [])
    except csv.Error as error:
        where = csv_reading.plain(error, rows.line_num, row_line=1)
        raise PermanentImportError(f"the file is not a valid CSV: {where}") from error


@dataclass
class Layout:
    """The shape of one file: its column names, the key's position, the typed columns."""

    names: list[str]
    key_index: int
    key_column: str
    spec: dict[str, dict] = field(default_factory=dict)

    @property
    def width(self) -> int:
        return len(self.names)

    def col(self, index: int) -> sql.Identifier:
        return sql.Identifier(f"c{index + 1}")

    @property
    def key(self) -> tuple:
        """Everything a statement composed from this layout reads (tables.rendered)."""
        spec = json.dumps(self.spec, sort_keys=True)
        return (tuple(self.names), self.key_index, self.key_column, spec)

    @property
    def signature(self) -> str:
        """Part of every content hash: renaming a column or retyping it changes every row."""
        payload = json.dumps([self.names, [self.spec.get(n) for n in self.names]], sort_keys=True)
        return hashlib.md5(payload.encode()).hexdigest()


def layout_for(first: list[str], imp: ScheduledImport) -> Layout:
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
        raise PermanentImportError(
            f"the key column {imp.key_column!r} is not in the file's columns ({_shown(names)})"
        ) from None
    missing = [n for n, c in spec.items() if c.get("required") and n not in names]
    if missing:
        raise PermanentImportError(
            f"required column(s) {', '.join(map(repr, missing))} not in the file's columns"
        )
    # A spec column the header lacks used to be taken for an optional column this file left
    # out, and the run succeeded: a typo in the spec (`prise`), or a column renamed upstream,
    # left `price` untyped and unchecked in every run, and nothing said so.
    if absent := [name for name in spec if name not in names]:
        raise PermanentImportError(
            f"the columns spec names {', '.join(map(repr, absent))}, which the file's header"
            f" does not have ({_shown(names)}): its type and rules would apply to no column;"
            f" correct the name in the spec, or remove it"
        )
    return Layout(names=names, key_index=key_index, key_column=imp.key_column, spec=spec)


def _shown(names: list[str]) -> str:
    """The file's column names for a message: the first 20."""
    return ", ".join(names[:20]) + (" …" if len(names) > 20 else "")


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
