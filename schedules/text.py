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


# A run's message is read on every surface (the API's lists, the admin, alerts, webhooks,
# Flower): one quoting a 200 KB "column name" made a 12 MB page of three runs.
MESSAGE_CHARS = 4000
QUOTED_CHARS = 200


def quoted(text: object, limit: int = QUOTED_CHARS) -> str:
    """Text from a file or a server (a column name, a reason phrase) for a message: printable,
    and cut at `limit` characters."""
    return cut(printable(text), limit)


def cut(text: str, limit: int = QUOTED_CHARS) -> str:
    return text if len(text) <= limit else f"{text[: limit - 1]}…"


def stored(text: str, limit: int = MESSAGE_CHARS) -> str:
    """A message as PostgreSQL can store it: no NUL (text and jsonb hold none: a server's
    reason phrase holding one crashed the run as it was written), and at most `limit`
    characters."""
    text = text.replace("\x00", "\\x00")
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… (cut: {len(text):,} characters in all)"
