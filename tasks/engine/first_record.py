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
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from django.conf import settings
from django.core.exceptions import ValidationError
from psycopg import sql

from schedules.models import ScheduledImport
from schedules.text import cut, quoted
from schedules.validation import (
    MAX_FILE_COLUMNS,
    MAX_TABLE_COLUMNS,
    STAGING_COLUMNS,
    validate_encoding,
)

from ..errors import PermanentImportError
from ..transcode import transcoded_from, wide_encoding_of
from . import csv_reading

CHUNK_BYTES = 256 * 1024


BOM = codecs.BOM_UTF8


QUOTE = b'"'


NOT_CSV_PREFIXES = (b"<!doctype", b"<html", b"<?xml", b"<head", b"<body")


# How a JSON object or array of objects, arrays or strings begins. A first byte of "{" or "["
# alone refused CSV files for good: bracketed column names (`[ID],[Name]`, as SQL Server and
# Access tools write them) and keys that are braced GUIDs (`{3F2504E0-...},Anvil`).
JSON_START = re.compile(rb'\{\s*["}]|\[\s*[\[{"\]]')


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
    """The encoding of the bytes the engine reads for an import saved with `encoding`: UTF-8
    for a wide one (UTF-16, UTF-32), which the fetch transcodes (tasks.transcode)."""
    try:
        validate_encoding(encoding)  # saved before the rule existed: `base64`, `rot13`, ...
    except ValidationError as error:
        raise PermanentImportError(error.messages[0]) from None
    return "utf-8" if transcoded_from(encoding) else codecs.lookup(encoding).name


def delimiter_bytes(imp: ScheduledImport) -> bytes:
    """The import's delimiter as the file holds it."""
    return imp.delimiter.encode(codec_name(imp.encoding), errors="replace")


def first_record_end(data: bytes, delimiter: bytes = b",") -> int | None:
    """Offset just past the first line break outside quotes, or None if there is none yet.

    A stray quote (`stray_quote`) opens nothing: the csv module, which then reads the file,
    takes it as a character of its field, and the record ends at its line's break."""
    start = 0
    while (newline := _line_break(data, start)) != -1:
        if data.count(QUOTE, 0, newline) % 2 == 0 or stray_quote(data[:newline], delimiter):
            return newline + 1
        start = newline + 1
    return None


def _line_break(data: bytes, start: int) -> int:
    """The offset of the next line break from `start`: a line feed, or a carriage return alone
    (old Mac line ends, which the csv module reads; a file of them had no line feed to end its
    first record, and one past MAX_FIELD_BYTES failed as "the first line is longer ...").
    -1 when none is known yet (a carriage return at the end may have its line feed to come)."""
    feed = data.find(b"\n", start)
    ret = data.find(b"\r", start, feed if feed != -1 else len(data) - 1)
    if ret != -1 and data[ret + 1 : ret + 2] != b"\n":
        return ret
    return feed


def line_breaks(data: bytes) -> int:
    """How many line breaks `data` holds as the csv module counts them (and an editor): a CRLF
    is one, a carriage return alone or a line feed alone is one too. Counting line feeds alone
    left out blank lines of a lone CR before the header: the fast path then named every bad
    row a line or more too early."""
    return data.count(b"\n") + data.count(b"\r") - data.count(b"\r\n")


def stray_quote(data: bytes, delimiter: bytes) -> bool:
    """Whether `data` (from the start of a record) holds a quote that neither opens nor
    closes a quoted field (QuoteCheck)."""
    return QUOTE in data and not QuoteCheck(delimiter).feed(data)


class QuoteCheck:
    """Finds, block by block at memory speed, a stray quote: one that neither opens a quoted
    field nor closes it. An inch mark (`A,Monitor 24",10`, `5" screen`), a space before an
    opening quote (`A, "Smith, John"`) or text after a closing one (`"abc"def`).

    PostgreSQL's COPY reads such a quote as opening a quoted section, which joins the rows up
    to the next quote into one field (or drops the quotes); the csv module reads it as a
    character of its field (or, after a closing quote, refuses the file). In a well-formed
    file the text outside quoted fields, between two quotes, is empty (a doubled quote) or
    begins and ends with a delimiter or a line break; so the file is split at its quotes and
    every other piece is looked at (128 ms for 42 MB of quoted fields, where a regular
    expression took 570 ms).
    """

    def __init__(self, delimiter: bytes) -> None:
        self.separators = frozenset(delimiter + b"\r\n")
        self.quotes = 0  # seen so far: even when the text being read is outside quotes
        # The piece being read (after the last quote): its first and last byte, and whether
        # a quote came before it (the data's first piece begins a line).
        self.first: int | None = None
        self.last: int | None = None
        self.after_quote = False

    def feed(self, block: bytes) -> bool:
        """False as soon as a stray quote is found in `block` (the stream's next bytes)."""
        if QUOTE not in block:
            if block:
                self.first = block[0] if self.first is None else self.first
                self.last = block[-1]
            return True
        pieces = block.split(QUOTE)
        head = pieces[0]
        first = self.first if self.first is not None else (head[0] if head else None)
        last = head[-1] if head else self.last
        if self.quotes % 2 == 0 and not self._fits(first, last, self.after_quote):
            return False
        separators = self.separators
        # pieces[i] follows quote i - 1 of the block: outside quotes when the quotes before
        # it are even in number.
        outside = pieces[1:-1][(self.quotes + 1) % 2 :: 2]
        if any(p and (p[0] not in separators or p[-1] not in separators) for p in outside):
            return False
        self.quotes += len(pieces) - 1
        tail = pieces[-1]
        self.first, self.last = (tail[0], tail[-1]) if tail else (None, None)
        self.after_quote = True
        return True

    def finish(self) -> bool:
        """At the end of the data: text after a closing quote is stray there too."""
        if self.quotes % 2 or not self.after_quote or self.first is None:
            return True
        return self.first in self.separators

    def _fits(self, first: int | None, last: int | None, after_quote: bool) -> bool:
        """Whether the piece outside quotes that a quote now ends may stand before it."""
        if first is None:
            return True  # empty: a doubled quote, or a quote first on the data's first line
        if after_quote and first not in self.separators:
            return False
        return last in self.separators


def read_prefix(read: Callable[[int], bytes], delimiter: bytes = b",") -> tuple[bytes, int | None]:
    """Read until the first record is complete (or the file ends); return it and its end."""
    prefix = b""
    while True:
        chunk = read(CHUNK_BYTES)
        prefix += chunk
        # Blank lines before it (and a UTF-8 byte-order mark) are not the first record: the
        # first blank line was taken for a header naming no column.
        lead = len(prefix) - len(prefix.removeprefix(BOM).lstrip(b"\r\n"))
        after = first_record_end(prefix[lead:], delimiter)
        end = lead + after if after is not None else None
        if end is not None or not chunk:
            return prefix, end
        if len(prefix) > max_field_bytes():
            raise too_long("the first line")


def sniff(prefix: bytes) -> None:
    """Refuse what is clearly not a CSV before COPY or the parser make less helpful errors."""
    head = prefix[:8192]
    if wide := wide_encoding_of(head):
        raise PermanentImportError(
            f"the file is {wide.upper()} text (it begins with its byte-order mark): set the "
            f"import's encoding to {wide}"
        )
    if b"\x00" in head:
        raise PermanentImportError("the file is not a CSV: it holds binary data")
    start = head.lstrip()
    if start.lower().startswith(NOT_CSV_PREFIXES) or looks_like_json(start):
        raise PermanentImportError("the file is not a CSV (it looks like HTML, XML or JSON)")


UTF8_MARKED = (
    "the file is UTF-8 text (it begins with its byte-order mark): set the import's encoding to "
    "utf-8"
)


def refuse_a_utf8_mark(prefix: bytes, imp: ScheduledImport) -> None:
    """Refuse a file that begins with a UTF-8 byte-order mark on an import read in another
    encoding, as sniff refuses UTF-16's: read as cp1252, the mark was glued to the first
    column's name ("ï»¿name"), and the run succeeded with that column in every record. Runs
    and Test source say it alike."""
    if prefix.startswith(BOM) and codec_name(imp.encoding) not in ("utf-8", "utf-8-sig"):
        raise PermanentImportError(UTF8_MARKED)


def looks_like_json(start: bytes) -> bool:
    """Whether a file's start (blank space left out) is JSON: an object, an array of objects,
    arrays or strings (JSON_START), or any JSON value that is the whole of `start`."""
    if start[:1] not in (b"{", b"["):
        return False
    if JSON_START.match(start):
        return True
    try:
        json.loads(start)
    except ValueError:  # (UnicodeDecodeError too)
        return False
    return True


def parse_first_record(data: bytes, imp: ScheduledImport) -> list[str]:
    try:
        text = data.decode(codec_name(imp.encoding))
    except UnicodeError as error:
        if isinstance(error, UnicodeDecodeError):
            # `data` holds the blank lines before the header, and a header's quoted names may
            # span lines: "line 1" named an editor's empty first line.
            reason, line = error.reason, line_breaks(data[: error.start]) + 1
        else:
            reason, line = "not that encoding", 1
        raise PermanentImportError(
            f"the file is not valid {imp.encoding} on line {line} ({reason}); set the import's "
            "encoding"
        ) from error
    rows = csv_reading.reader(io.StringIO(text, newline=""), imp.delimiter, max_field_bytes())
    try:
        return next((row for row in rows if row), [])
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
            # The spec names every column (in the file's order): it stands in for the header,
            # as long as the header names no column otherwise (its empty or repeated names
            # aside). A partner's export that moved the key column was keyed by another
            # column, and mode sync deleted every record.
            said = list(spec)
            repeated = {name for name in names if names.count(name) > 1}
            if wrong := [
                (number, name, said[number - 1])
                for number, name in enumerate(names, 1)
                if name and name not in repeated and name != said[number - 1]
            ]:
                number, name, spec_name = wrong[0]
                raise PermanentImportError(
                    f"the header names column {number} {cut(name)!r} where the columns spec, "
                    f"which stands in for it ({problems}), names {cut(spec_name)!r}: the file's "
                    "columns moved; name them in the spec in the file's order"
                )
            names = said
    else:
        names = list(spec) or [f"column_{i}" for i in range(1, len(first) + 1)]
    if len(names) > MAX_FILE_COLUMNS:
        raise PermanentImportError(
            f"the file has {len(names)} columns; an import takes at most {MAX_FILE_COLUMNS} "
            f"(PostgreSQL's limit is {MAX_TABLE_COLUMNS} columns a table, and staging uses "
            f"{STAGING_COLUMNS})"
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
    """The file's column names for a message: the first 20, each cut (a wrong file's first
    line of 200 KB "names" made a 4 MB message)."""
    return ", ".join(quoted(name) for name in names[:20]) + (" …" if len(names) > 20 else "")


def header_problems(names: list[str]) -> str:
    """What is wrong with a header's names ('' when nothing): repeated and empty names.

    A record is a JSON object keyed by column name: `id,id` would keep one value of two under
    a key that may not be the one the row was keyed by.
    """
    positions: dict[str, list[int]] = {}
    for number, name in enumerate(names, 1):
        positions.setdefault(name, []).append(number)
    problems = [
        f"repeats {cut(name)!r} (columns {', '.join(map(str, numbers[:20]))})"
        for name, numbers in positions.items()
        if name and len(numbers) > 1
    ]
    if empty := positions.get(""):
        shown = ", ".join(map(str, empty[:10])) + (" …" if len(empty) > 10 else "")
        problems.append(f"has no name for column{'s' if len(empty) > 1 else ''} {shown}")
    if len(problems) > 5:
        problems = [*problems[:5], f"and {len(problems) - 5} more"]
    return "; ".join(problems)
