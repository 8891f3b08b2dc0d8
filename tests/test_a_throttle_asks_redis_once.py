"""A throttled request asks Redis once: one script drops the times out of the window, refuses
or counts the request (schedules.api.throttles.SLIDING_WINDOW). DRF's SimpleRateThrottle read
the history and wrote it back, two round trips, each through a redis-py client Django's cache
backend built for the call: a sixth of a trigger's CPU profile (issue 15)."""

import time
from types import SimpleNamespace

import pytest
from django.core.cache import caches

from schedules.api.throttles import ManualRunThrottle
from tests.api_support import reset_throttle

KEY = "throttle_manual_run_7"


# What the throttle reads of a request: its user's id.
Request = SimpleNamespace(user=SimpleNamespace(pk=7))


@pytest.fixture(autouse=True)
def two_a_minute(settings):
    settings.API_MANUAL_RUN_RATE = "2/minute"
    reset_throttle("manual_run", 7)
    ManualRunThrottle().allow_request(Request, None)  # the script loaded once in this process
    reset_throttle("manual_run", 7)
    yield
    reset_throttle("manual_run", 7)


def test_a_request_is_counted_in_one_round_trip_and_refused_in_one(round_trips):
    allowed = [ManualRunThrottle().allow_request(Request, None) for _ in range(2)]
    refused = ManualRunThrottle()
    assert allowed == [True, True] and refused.allow_request(Request, None) is False
    assert len(round_trips) == 3
    assert 0 < refused.wait() <= 60
    throttle = caches["throttle"]  # kept for the window, as DRF's cache.set(..., duration)
    assert 59 <= throttle._cache.get_client().ttl(throttle.make_and_validate_key(KEY)) <= 60


def test_times_out_of_the_window_no_longer_count(monkeypatch):
    # Given two requests 61 s ago: the budget is spent then, not now
    past = time.time() - 61
    monkeypatch.setattr(ManualRunThrottle, "timer", lambda self: past)
    assert [ManualRunThrottle().allow_request(Request, None) for _ in range(3)] == [
        True, True, False,
    ]  # fmt: skip
    monkeypatch.undo()

    # Then two more pass now, and the third waits for the first of them to leave the window
    throttles = [ManualRunThrottle() for _ in range(3)]
    assert [t.allow_request(Request, None) for t in throttles] == [True, True, False]
    assert 59 < throttles[2].wait() <= 60


def test_a_history_pickled_by_drfs_throttle_is_replaced():
    # Given the history DRF's throttle left before an upgrade (a pickled list of times)
    caches["throttle"].set(KEY, [time.time(), time.time()], 60)

    # Then it is dropped, not a failure: the requests count afresh
    assert [ManualRunThrottle().allow_request(Request, None) for _ in range(3)] == [
        True, True, False,
    ]  # fmt: skip
