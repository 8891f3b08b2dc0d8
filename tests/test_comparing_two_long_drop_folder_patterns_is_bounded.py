"""Comparing two drop-folder queue patterns is bounded in time, and keeps no memory afterwards
(common.globs.a_name_of_both).

Regressions (review):
- a cache kept for the process (of `_kinds`) held about 50 MB after each comparison of two long
  patterns, for good: a user saving long patterns took a web worker towards its OOM kill;
- the bounds on each pattern's parts and bytes did not bound their product: two patterns they
  accept (202 parts, 1,002 bytes) took 2.2 s to compare, once per other queue of the folder,
  under the folder's lock. Past a bound of characters tried the save is refused, in words.
"""

from __future__ import annotations

import gc
import tracemalloc
from urllib.parse import quote

import pytest

from common import globs
from schedules import drop_folders
from tests.api_support import API, client_for
from tests.factories import make_import

pytestmark = pytest.mark.django_db(transaction=True)


def pattern(first: int, end: str = "*", sets: int = 200) -> str:
    """`*[xĀ][xā]…*`: every set shares `x`, so every pair of places is a state of the search,
    each with a set of characters of its own (2-byte characters: 1,002 bytes in all)."""
    return "*" + "".join(f"[x{chr(first + k)}]" for k in range(sets)) + end


def test_a_comparison_keeps_no_memory_once_answered():
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for first in (0x300, 0x500, 0x600):
        with pytest.raises(globs.TooComplex):
            globs.a_name_of_both(pattern(0x100), pattern(first))
    gc.collect()
    kept = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()

    assert kept < 1024**2, f"{kept / 1024**2:.0f} MB kept after three comparisons"


def test_two_patterns_the_bounds_accept_but_too_long_to_compare_are_refused_in_words(alice, drop):
    # Given a queue on a long pattern (accepted by the bounds), and another import of alice's
    first, second = pattern(0x100, "z"), pattern(0x300, "q")
    for long in (first, second):
        drop_folders._refuse_past_name_max(long)
    make_import(alice, f"file://{drop}/{quote(first, safe='*[]')}", move_processed=True)
    other = make_import(alice, f"file://{drop}/orders.csv", name="orders", dataset="orders")

    # When she makes the other a queue on another long pattern of the folder
    answer = client_for(alice).patch(
        f"{API}/imports/{other.pk}",
        {"source_url": f"file://{drop}/{quote(second, safe='*[]')}", "move_processed": True},
        format="json",
    )

    # Then it is refused, saying why and what to do (it took seconds, under the folder's lock)
    assert answer.status_code == 400, answer.json()
    said = str(answer.json()["errors"])
    assert "are too long to tell whether a delivery matches both" in said, said
    assert "shorten this pattern" in said and "your import 'products'" in said, said


def test_patterns_of_every_day_are_compared_as_before():
    shouty = "".join(f"[{c.upper()}{c}]" for c in "quarterly_report_of_the_north") + "_*.csv"
    assert globs.a_name_of_both(shouty, "*.csv") == "QUARTERLY_REPORT_OF_THE_NORTH_.csv"
    assert globs.a_name_of_both("products_*.csv", "*.csv") == "products_.csv"
    assert globs.a_name_of_both("a_*.csv", "b_*.csv") is None
