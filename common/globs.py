"""A source's glob (`products_*.csv`), read as the shell reads it, for a drop folder's and an
SFTP server's files alike: `*`, `?` and `[...]` do not match a leading dot, so a hidden file
(`.products.csv.part`, an upload in progress that many clients name so) is never taken unless
the pattern itself starts with one."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable


def matches(name: str, pattern: str) -> bool:
    if name.startswith(".") and not pattern.startswith("."):
        return False
    return fnmatch.fnmatchcase(name, pattern)


def matcher(pattern: str) -> Callable[[str], re.Match[str] | None]:
    """`matches` for one pattern, compiled once (truthy for a match): a folder's listing asks
    it of every name, and fnmatch looks its pattern up again at each call."""
    hidden = "" if pattern.startswith(".") else r"(?!\.)"
    return re.compile(hidden + fnmatch.translate(pattern)).match


_NUMBERS = re.compile(r"([0-9]+)")


def delivery_order(name: str) -> tuple[tuple[int, int, str], ...]:
    """How names of files delivered at the same moment sort: their numbers as numbers
    (`products_8` before `products_10`). In text order, files unpacked together (`tar x`,
    `cp -p`, a share keeping whole seconds) were queued `_10`, `_11`, `_8`, `_9`, and the
    dataset ended with an older delivery."""
    return tuple(
        (0, int(part), part) if part.isascii() and part.isdigit() else (1, 0, part)
        for part in _NUMBERS.split(name)
        if part
    )
