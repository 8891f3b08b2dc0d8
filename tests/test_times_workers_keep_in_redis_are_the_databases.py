"""Times that workers keep in Redis for one another are the database's (common.database_clock).

The owner's cap, an owner's one webhook at a time and a receiver's wait are kept in Redis with
a time, which the next worker compares with its own. Each worker stamped them by its own host's
clock: one five minutes slow admitted a run that another took as admitted five minutes ago, long
expired, and started another of the owner's runs over the cap; its webhook's turn had expired
before it was taken, so another of the owner's webhooks went at the same time; the wait it
noted for a receiver that did not answer was over as it noted it.

Here the process's clock is moved five minutes back with time_machine, as a host whose clock
is slow would be, its offset to the database's clock set to match, and then put right, as
another worker's.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import time_machine

from common import database_clock
from schedules.models import ImportRun
from schedules.notifications import DELIVER
from tasks import destinations, fairness, turns
from tests.factories import PRODUCTS_CSV, make_import
from tests.webhook_support import forget_redis_keys

pytestmark = pytest.mark.django_db

SLOW = 300  # seconds


@pytest.fixture
def on_a_slow_host(monkeypatch):
    """Within it, this process is a worker whose host clock is five minutes slow."""

    @contextmanager
    def slow() -> Iterator[None]:
        with time_machine.travel(time.time() - SLOW, tick=True):
            monkeypatch.setattr(database_clock, "offset", lambda: float(SLOW))
            try:
                yield
            finally:
                monkeypatch.setattr(database_clock, "offset", lambda: 0.0)

    return slow


@pytest.fixture(autouse=True)
def _no_keys_left():
    yield
    forget_redis_keys("importbeat:turns:*")
    forget_redis_keys("importbeat:destination:*")
    forget_redis_keys("importbeat:owner:*")


def test_a_run_admitted_by_a_slow_worker_holds_its_owners_slot(
    alice, csv_server, settings, on_a_slow_host
):
    # Given alice's cap of one, and her two runs queued
    settings.MAX_RUNNING_PER_OWNER = 1
    url = csv_server.serve("/p.csv", PRODUCTS_CSV)
    first, second = (
        ImportRun.objects.create(
            scheduled_import=make_import(alice, url, name=name, dataset=name), trigger="manual"
        )
        for name in ("a", "b")
    )

    # When a worker whose clock is five minutes slow admits the first
    with on_a_slow_host():
        assert fairness.admit(first)

    # Then another worker does not admit the second over her cap
    assert not fairness.admit(second)


def test_a_webhook_turn_taken_by_a_slow_worker_is_held(bob, on_a_slow_host):
    # Given a worker whose clock is five minutes slow sending one of bob's webhooks
    key = turns.of_owner(bob.pk)
    sending = turns.turn(key, turns.Job(DELIVER, "first", 1, 0))
    with on_a_slow_host():
        sending.__enter__()
    try:
        # When another worker has one of bob's webhooks to send meanwhile
        # Then it waits its turn
        with (
            pytest.raises(turns.Parked, match="another webhook of the same owner"),
            turns.turn(key, turns.Job(DELIVER, "second", 2, 0)),
        ):
            pass
    finally:
        with on_a_slow_host():
            sending.__exit__(None, None, None)


def test_a_receiver_a_slow_worker_found_not_answering_is_waited_for(on_a_slow_host):
    # Given a receiver that did not answer a worker whose clock is five minutes slow
    with on_a_slow_host():
        destinations.not_answered("hooks.example.com:443", "connection refused")

    # When another worker has a notification for it a moment later
    # Then it waits, as the first worker would
    with pytest.raises(destinations.Waiting, match="did not answer another notification"):
        destinations.admit("hooks.example.com:443")
