"""A receiver that is slow but answers holds one worker slot at most, not every slot.

A callback that answers each POST after a few seconds (well inside the read timeout, so it is
never taken as not answering) took a worker slot for those seconds per notification: a user
whose imports failed together held every slot of the worker until their notifications were
through, and every other user's run waited behind them in the queue. Now an owner's
notifications are sent one at a time; the others of that owner come back when it is done,
their attempts uncounted, and the slots are free meanwhile for everyone else.
"""

from __future__ import annotations

from contextlib import contextmanager

import pytest
import redis
from django.conf import settings as django_settings
from redis.backoff import NoBackoff
from redis.retry import Retry

from project.devservices import free_port
from schedules.models import NotificationDelivery
from tasks import owner_turns, webhooks
from tests.conftest import wait_for
from tests.test_a_callback_that_never_answers_holds_back_no_one_else import (
    alices_run_after_bobs_notifications,
    deliver,
    email,
    notification,
)
from tests.webhook_support import Hook, Slow

NOTIFICATIONS = 6
ANSWER_SECONDS = 3.0


@pytest.fixture
def slow():
    receiver = Slow(ANSWER_SECONDS)
    yield receiver
    receiver.close()


@pytest.mark.processes
@pytest.mark.django_db(transaction=True)
def test_a_slow_callback_holds_back_no_one_elses_run(alice, bob, csv_server, slow, processes):
    # Given a worker of two slots, and bob's imports whose callback answers after 3 s
    # When they all fail, and then alice runs her import
    # Then her run does not wait for bob's receiver: it ends while his first answer is awaited
    waited = alices_run_after_bobs_notifications(
        alice, bob, slow.url, NOTIFICATIONS, csv_server, processes
    )
    answered = slow.answered
    print(f"alice's run waited {waited:.1f} s; bob's receiver had answered {answered}")
    assert answered <= 1, "alice's run waited for bob's receiver"

    # and bob's notifications all arrive, one at a time, each at its first attempt
    delivered = NotificationDelivery.objects.filter(status="delivered")
    wait_for(lambda: delivered.count() == NOTIFICATIONS, 90, what=processes.logs())
    assert slow.most_at_once == 1
    assert set(delivered.values_list("attempts", flat=True)) == {1}
    assert len(slow.requests) == NOTIFICATIONS


@pytest.fixture
def hook():
    receiver = Hook()
    yield receiver
    receiver.close()


@contextmanager
def sending_for(owner):
    """Another worker sending one of `owner`'s notifications meanwhile (holding their turn)."""
    store = redis.Redis.from_url(django_settings.REDIS_URL)
    lock = store.lock(f"importbeat:owner:{owner.pk}:notifying", timeout=30)
    assert lock.acquire(blocking=False)
    try:
        yield
    finally:
        lock.release()


@pytest.mark.django_db
def test_a_notification_waits_while_another_of_its_owner_is_sent_and_goes_after(bob, hook):
    delivery = notification(bob, hook.url)

    # While another of bob's notifications is being sent, this one is not, and its log is as
    # it was: waiting for its turn is not one of its attempts
    with sending_for(bob), pytest.raises(owner_turns.OwnerBusy, match="waiting its turn"):
        webhooks.deliver(delivery.pk, attempt=1, final=False)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.error) == ("pending", 0, "")
    assert not hook.requests

    # Once it is sent, this one goes
    assert deliver(delivery).status == "delivered"
    assert len(hook.requests) == 1


@pytest.mark.django_db
def test_owners_do_not_wait_on_one_another(alice, bob, hook):
    alices = notification(alice, hook.url, "alice's feed")
    with sending_for(bob):
        assert deliver(alices).status == "delivered"


@pytest.mark.django_db
def test_an_owners_emails_and_their_held_emails_wait_their_turn(alice, mailoutbox):
    pending = email(alice)
    held = NotificationDelivery.objects.create(
        scheduled_import=pending.scheduled_import, run=pending.run, event="failed",
        channel="email", status="held",
    )  # fmt: skip
    with sending_for(alice):
        with pytest.raises(owner_turns.OwnerBusy):
            webhooks.deliver(pending.pk, attempt=1, final=False)
        with pytest.raises(owner_turns.OwnerBusy):
            webhooks.send_digest(alice.pk, final=False)
    assert not mailoutbox
    assert deliver(pending).status == "delivered"
    assert webhooks.send_digest(alice.pk) is None
    held.refresh_from_db()
    assert held.status == "delivered"


@pytest.mark.django_db
def test_without_redis_an_owners_notifications_go_as_they_come(bob, hook, monkeypatch):
    nowhere = redis.Redis(port=free_port(), socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0))
    monkeypatch.setattr(owner_turns, "client", lambda: nowhere)
    assert deliver(notification(bob, hook.url)).status == "delivered"


def test_waits_for_a_turn_grow_and_are_spread():
    firsts = [owner_turns.wait_seconds(0) for _ in range(200)]
    lasts = [owner_turns.wait_seconds(10) for _ in range(200)]
    assert min(firsts) >= 1 and max(firsts) <= 2
    assert max(lasts) <= 1 + owner_turns.MAX_WAIT_SECONDS
    assert len(set(lasts)) > 100
