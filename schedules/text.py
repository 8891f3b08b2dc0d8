"""Stored text on its way out: names and messages may hold whatever a user or a file put there.

A line break in an email subject makes Django raise BadHeaderError (the alert is lost), and an
escape sequence printed by `run_import` is obeyed by the operator's terminal. Names are refused
with control characters when saved (`validation.validate_name`), but rows saved earlier, file
values quoted in error messages and URLs still pass through here.
"""

from __future__ import annotations

import unicodedata


def has_control_characters(text: str) -> bool:
    return any(unicodedata.category(ch) == "Cc" for ch in text)


def printable(text: object) -> str:
    """`text` with every character a terminal or a mail header would act on shown escaped
    (`\\x1b`, `\\r`, `\\u202e`): control characters, bidi overrides, other invisibles."""
    text = str(text)
    if text.isprintable():
        return text
    return "".join(
        ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text
    )
