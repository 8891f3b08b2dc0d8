"""The API's JSON parser: DRF's, refusing bodies nested deeper than any request needs.

Python's json module recurses once per level: a body of a hundred thousand `[` raised
RecursionError, which DRF does not catch, and every endpoint (the unauthenticated token
endpoint too) answered an HTML 500. A nesting limit makes it a 400 like any other bad body,
and keeps what a view, a serializer or the error handler walks small.
"""

from __future__ import annotations

from typing import Any

from rest_framework import parsers
from rest_framework.exceptions import ParseError

# The deepest body of this API is an import's `columns` spec: a list of objects (3 levels).
MAX_JSON_DEPTH = 32


class JSONParser(parsers.JSONParser):
    def parse(self, stream, media_type=None, parser_context=None) -> Any:
        too_deep = ParseError(f"JSON parse error - nested deeper than {MAX_JSON_DEPTH} levels")
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise too_deep from None
        if _deeper_than(data, MAX_JSON_DEPTH):
            raise too_deep
        return data


NO_CHARACTER = (
    "JSON parse error - a string holds a lone surrogate (\\ud800 to \\udfff), which is no character"
)


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether `value` nests lists or objects more than `limit` levels (without recursing).

    Raises ParseError for a string, a key or a value, that holds a lone surrogate (`"\\ud800"`,
    which JSON's escapes allow): a key echoed in the answer could not be written (the token
    endpoint's 500), and a value reached PostgreSQL, which refuses it (a column's name)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = [*item.keys(), *item.values()]
        elif isinstance(item, list):
            children = item
        else:
            if isinstance(item, str) and not _encodable(item):
                raise ParseError(NO_CHARACTER)
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
