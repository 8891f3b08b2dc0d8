"""A source's glob (`products_*.csv`), read as the shell reads it, for a drop folder's and an
SFTP server's files alike: `*`, `?` and `[...]` do not match a leading dot, so a hidden file
(`.products.csv.part`, an upload in progress that many clients name so) is never taken unless
the pattern itself starts with one."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache


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


_STAR = "*"


@dataclass(frozen=True)
class _Test:
    """A test of one character (a literal, `?`, or a `[...]` set), and the characters it names."""

    test: Callable[[str], object]
    named: frozenset[str]


def _tokens(pattern: str) -> list[str | _Test]:
    """`pattern` as fnmatch reads it: `*`, or a test of one character (a `[...]` set's bounds
    found as fnmatch.translate finds them)."""
    tokens: list[str | _Test] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        i += 1
        if c == "*":
            if not tokens or tokens[-1] != _STAR:
                tokens.append(_STAR)
        elif c == "?":
            tokens.append(_Test(lambda _: True, frozenset()))
        elif c == "[":
            j = i + (i < n and pattern[i] == "!")
            j += j < n and pattern[j] == "]"
            j = pattern.find("]", j)
            if j < 0:
                tokens.append(_Test("[".__eq__, frozenset("[")))
            else:
                bracket = pattern[i - 1 : j + 1]
                tokens.append(
                    _Test(re.compile(fnmatch.translate(bracket)).match, frozenset(bracket))
                )
                i = j + 1
        else:
            tokens.append(_Test(c.__eq__, frozenset(c)))
    return tokens


def size(pattern: str) -> tuple[int, int]:
    """(its parts: characters, `?`, `[...]` sets and stars, each set one; the bytes of the
    shortest name it matches). A pattern's parts, not its bytes, are what comparing two
    costs (`a_name_of_both`); a case-insensitive pattern (`[Qq][Uu]…`) spends four bytes on
    one character of the names it matches."""
    tokens = _tokens(pattern)
    return len(tokens), sum(_least_bytes(token) for token in tokens if isinstance(token, _Test))


def _least_bytes(test: _Test) -> int:
    """The bytes of the character a literal names; one for `?` or a set (at least)."""
    return len(next(iter(test.named)).encode()) if len(test.named) == 1 else 1


def _kinds(named: frozenset[str]) -> list[str]:
    """A character of each kind that tests naming `named` tell apart: each one named, the one
    after it (a range `[a-z]` ends after its last), and one named nowhere; readable ones first."""
    kinds = (named | {chr(ord(c) + 1) for c in named} | set("x1_\ue000")) - {"/", "\0"}
    return sorted(kinds, key=lambda c: (not c.isascii() or not c.isalnum(), not c.isprintable(), c))


# Characters tried, at most, in one comparison (0.1 to 0.4 s here; the 60 stars of each of
# `*a*a…` and `*b*b…` take 85,000): bounding each pattern's parts and bytes did not bound their
# product, and two patterns of 202 parts each took 2.2 s (review).
TRIES = 150_000


class TooComplex(Exception):
    """Two patterns whose comparison would take more than TRIES characters tried."""


def a_name_of_both(first: str, second: str) -> str | None:
    """A file name both globs match (`matches`), the shortest; None when none does. Two queues
    of deliveries on `products_*.csv` and `*.csv` share `products_.csv`. TooComplex when the
    answer would cost more than TRIES characters tried."""
    tokens = (_tokens(first), _tokens(second))
    # Kept for this comparison only: a cache for the process kept about 50 MB a comparison of
    # two long patterns, for good, in the web process that saved them (review).
    kinds = cache(_kinds)
    tries = TRIES
    ends = (len(tokens[0]), len(tokens[1]))
    hidden_allowed = first.startswith(".") and second.startswith(".")

    @cache
    def closure(i: int, j: int) -> frozenset[tuple[int, int]]:
        # Where a star may match nothing, the next token is reached too.
        states = {(i, j)}
        if i < ends[0] and tokens[0][i] == _STAR:
            states |= closure(i + 1, j)
        if j < ends[1] and tokens[1][j] == _STAR:
            states |= closure(i, j + 1)
        return frozenset(states)

    def named(token: str | _Test | None) -> frozenset[str]:
        return token.named if isinstance(token, _Test) else frozenset()

    def step(token: str | _Test | None, at: int, c: str) -> int | None:
        if token is None:
            return None
        if token == _STAR:
            return at
        return at + 1 if token.test(c) else None  # type: ignore[union-attr]

    # A state is the place in each pattern, and whether a character was read (the first one
    # may not be a dot): searched breadth first, so the name found is a shortest one.
    frontier = [(state, "") for state in sorted(closure(0, 0))]
    seen: set[tuple[int, int]] = set()  # (each, once a character was read)
    while frontier:
        following = []
        for (i, j), name in frontier:
            first_token = tokens[0][i] if i < ends[0] else None
            second_token = tokens[1][j] if j < ends[1] else None
            for c in kinds(named(first_token) | named(second_token)):
                tries -= 1
                if tries < 0:
                    raise TooComplex(f"more than {TRIES:,} characters to try")
                if not name and c == "." and not hidden_allowed:
                    continue
                ni, nj = step(first_token, i, c), step(second_token, j, c)
                if ni is None or nj is None:
                    continue
                for state in sorted(closure(ni, nj)):
                    if state == ends:
                        return name + c
                    if state not in seen:
                        seen.add(state)
                        following.append((state, name + c))
        frontier = following
    return None
