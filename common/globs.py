"""A source's glob (`products_*.csv`), read as the shell reads it, for a drop folder's and an
SFTP server's files alike: `*`, `?` and `[...]` do not match a leading dot, so a hidden file
(`.products.csv.part`, an upload in progress that many clients name so) is never taken unless
the pattern itself starts with one."""

from __future__ import annotations

import fnmatch


def matches(name: str, pattern: str) -> bool:
    if name.startswith(".") and not pattern.startswith("."):
        return False
    return fnmatch.fnmatchcase(name, pattern)
