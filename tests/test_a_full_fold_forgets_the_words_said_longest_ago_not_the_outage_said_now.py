"""A fold of repeated lines (common.said_once) that has met as many distinct words as it keeps
forgets the words said longest ago to take new ones: the words of an outage said a second ago
are still folded.

Regression (reviewC hunt): full, it forgot all its words at once. A long-lived process (a web,
a worker) that had met KEPT distinct words in its life, most of them long ago, said the line of
an outage under way again a second after it had said it, at the first new words it met.
"""

from __future__ import annotations

from common import said_once
from common.said_once import KEPT, SaidOnce


def test_words_said_a_second_ago_are_folded_when_new_words_fill_the_fold(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(said_once.time, "monotonic", lambda: now[0])
    fold = SaidOnce()
    # Given a fold that met KEPT - 1 distinct words an hour ago, and an outage's words now
    for number in range(KEPT - 1):
        assert fold.again(f"the source of import {number} did not answer") == ""
    now[0] += 3600
    assert fold.again("cannot reach Redis at 127.0.0.1:6379: connection refused") == ""

    # When new words come a second later, past what it keeps
    now[0] += 1
    assert fold.again("the broker refuses the login") == ""

    # Then the outage's words, met again within the minute, are still folded
    now[0] += 1
    assert fold.again("cannot reach Redis at 127.0.0.1:6379: connection refused") is None
    # ... and the words met an hour ago, forgotten, are said again
    assert fold.again("the source of import 0 did not answer") == ""
