"""A throttle that a full Redis cannot count lets the request through and says why in words.

Before, the web log carried Redis's raw script error: `source_check not counted, Redis did not
take it: Error running script (call to f_3b59…): @user_script:11: … -OOM command not allowed
when used memory > 'maxmemory'.`
"""

from __future__ import annotations

import logging
from types import SimpleNamespace

import redis.exceptions

from schedules.api import throttles

FULL = "Redis is full: it reached its maxmemory and evicts nothing; free memory or raise maxmemory"


def full_redis(cache):
    def script(**kwargs):
        raise redis.exceptions.ResponseError(
            "Error running script (call to f_3b59c8e5c0a1d2b3): @user_script:11: "
            "@user_script: 11: -OOM command not allowed when used memory > 'maxmemory'."
        )

    return script


def test_a_throttle_a_full_redis_cannot_count_lets_the_request_through_and_says_why(
    monkeypatch, caplog
):
    # Given a Redis at its maxmemory that evicts nothing (the throttle's script refused)
    monkeypatch.setattr(throttles, "_sliding_window", full_redis)
    caplog.set_level(logging.INFO)
    request = SimpleNamespace(user=SimpleNamespace(pk=1))

    # When a source check is throttled
    allowed = throttles.SourceCheckThrottle().allow_request(request, None)

    # Then it goes on, and the log says why in words, without Redis's own text
    assert allowed is True
    (said,) = [r.getMessage() for r in caplog.records if "not counted" in r.getMessage()]
    assert said == f"source_check not counted, Redis did not take it: it refuses writes: {FULL}"
