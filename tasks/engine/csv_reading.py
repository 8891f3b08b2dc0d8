"""Python's csv module as the importer reads with it: one field limit for every reader, and its
errors in plain words.

CPython's `_csv` stops with a programmer's sentence ("field larger than field limit (131072)",
"',' expected after '\"'", "new-line character seen in unquoted field - do you need to open
the file in universal-newline mode?"); the owner of an import reads a run's message, not
Python's. Each message `_csv` raises while reading a file is said here as what is wrong in the
file and where; one not known here reads a plain sentence with its line, and its text goes to
the worker's log.
"""

from __future__ import annotations

import csv
import logging
import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from _csv import _reader

logger = logging.getLogger("importbeat.importer")

_FIELD_LIMIT = re.compile(r"field larger than field limit \((\d+)\)")
_AFTER_QUOTE = re.compile(r"'(.)' expected after '(.)'", re.DOTALL)
# Names for delimiters a reader would not see as characters.
_SHOWN = {"\t": "a tab", " ": "a space"}


def reader(lines: Iterable[str], delimiter: str, limit: int, strict: bool = False) -> _reader:
    """A csv reader whose fields may be `limit` characters long (MAX_FIELD_BYTES).

    The limit is the csv module's, process-wide: set by every reader, a file reads the same
    whether or not another import ran in this process first (the module's default is 128 KiB).
    """
    csv.field_size_limit(limit)
    return csv.reader(lines, delimiter=delimiter, strict=strict)


def plain(error: csv.Error, line: int, row_line: int | None = None) -> str:
    """What `error` says is wrong in the file, in plain words: `line` is the line the parser
    was reading, `row_line` the line its row started on (a quoted field may span lines)."""
    text = str(error)
    logger.info("csv parser stopped on line %s: %s", line, text)
    for pattern, say in _SENTENCES:
        if match := pattern.match(text):
            return say(match, line, row_line or line)
    logger.warning("csv parser stopped for a reason not known here, line %s: %s", line, text)
    return f"the CSV reader could not make sense of line {line}"


def _too_long(match: re.Match[str], line: int, row_line: int) -> str:
    return f"a field on line {line} is longer than the largest allowed ({_size(match[1])})"


def _after_quote(match: re.Match[str], line: int, row_line: int) -> str:
    delimiter, quote = _shown(match[1]), _shown(match[2])
    return (
        f"on line {line}, a quoted field goes on after its closing quote ({quote}) instead of "
        f"ending with {delimiter} or the end of the line; a quote inside a quoted field is "
        f"written twice"
    )


def _line_break(match: re.Match[str], line: int, row_line: int) -> str:
    return (
        f"line {line} has a line break inside a field that is not quoted; a field that holds "
        f"line breaks must be in quotes"
    )


def _no_closing_quote(match: re.Match[str], line: int, row_line: int) -> str:
    return (
        f"the file ends inside a quoted field: a quote opened in the row starting on line "
        f"{row_line} is never closed"
    )


def _nul(match: re.Match[str], line: int, row_line: int) -> str:
    return f"the file contains a NUL character on line {line}: binary data, not text"


_SENTENCES: tuple[tuple[re.Pattern[str], Callable[[re.Match[str], int, int], str]], ...] = (
    (_FIELD_LIMIT, _too_long),
    (_AFTER_QUOTE, _after_quote),
    # "... - do you need to open the file in universal-newline mode?" (3.11), "... with
    # newline=''?" (3.12 on): the advice is for a programmer, the fact for the file's owner.
    (re.compile(r"new-line character seen in unquoted field"), _line_break),
    (re.compile(r"unexpected end of data"), _no_closing_quote),
    # Python 3.10 and before ("line contains NUL", "line contains NULL byte"); 3.11 reads NUL.
    (re.compile(r"line contains NUL"), _nul),
)


def _shown(character: str) -> str:
    return _SHOWN.get(character, f"'{character}'")


def _size(limit: str) -> str:
    # The csv module counts characters, not bytes.
    return f"{int(limit):,} characters"
