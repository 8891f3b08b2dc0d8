"""A receiver that is slow but answers holds one worker slot at most, not every slot.

A callback that answers each POST after a few seconds (well inside the read timeout, so it is
never taken as not answering) took a worker slot for those seconds per notification: a user
whose imports failed together held every slot of the worker until their notifications were
through, and every other user's run waited behind them in the queue. Now an owner's
notifications are sent one at a time: the others of that owner are parked in their owner's line
and sent again, their attempts as they were, when the one before is done; the slots are free
meanwhile for everyone else (tasks/owner_turns.py). An owner's e-mails take turns on their
mailbox, one e-mail per interval (schedules.email_digest), as before.
"""

from __future__ import annotations

import pytest
import redis
from django.conf import settings as django_settings
from kombu.exceptions import OperationalError
from redis.backoff import NoBackoff
from redis.retry import Retry

from project.celery import app
from project.devservices import free_port
from schedules.models import NotificationDelivery
from schedules.notifications import DELIVER
from tasks import maintenance, owner_turns
from tasks.tasks import deliver_notification, send_email_digest
from tests.conftest import wait_for
from tests.reliability import start_flower
from tests.test_a_callback_that_never_answers_holds_back_no_one_else import (
    alices_run_after_bobs_notifications,
    deliver,
    email,
    notification,
)
from tests.test_a_notification_that_failed_for_good_fails_its_task import AUTH, delivery_tasks
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
    # Given Flower, a worker of two slots, and bob's imports whose callback answers after 3 s
    flower = start_flower(processes, AUTH)
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

    # and Flower lists one task per notification, succeeded; those parked said so meanwhile
    listed = lambda: len(delivery_tasks(flower) or ()) == NOTIFICATIONS  # noqa: E731
    wait_for(listed, 30, what="flower\n" + processes.logs())
    assert {task["state"] for task in delivery_tasks(flower).values()} == {"SUCCESS"}
    assert f"retry: {owner_turns.PARKED}" in processes.logs()


@pytest.fixture
def hook():
    receiver = Hook()
    yield receiver
    receiver.close()


@pytest.fixture
def sent(monkeypatch):
    """The messages the workers' tasks send, kept here instead of going to the broker."""
    messages = []

    def keep(name, args=None, kwargs=None, **options):
        messages.append((name, options.get("task_id"), args, options.get("retries", 0)))

    monkeypatch.setattr(app, "send_task", keep)
    return messages


@pytest.fixture(autouse=True)
def _no_lines_left():
    """The turns and lines these tests leave go with them (the suite's Redis is shared by a
    runner's tests)."""
    yield
    store = redis.Redis.from_url(django_settings.REDIS_URL)
    for key in [
        *store.scan_iter("importbeat:owner:*:notifying"),
        *store.scan_iter("importbeat:owner:*:line"),
    ]:
        store.delete(key)
    store.delete(owner_turns.LINES)


def sending_for(owner):
    """Another worker sending one of `owner`'s notifications meanwhile (holding their turn)."""
    return owner_turns.turn(owner.pk, owner_turns.Job(DELIVER, "another", 0, 0))


def parked(result) -> bool:
    """A task that ended parked: in RETRY, saying why."""
    return (result.state, str(result.result)) == ("RETRY", owner_turns.PARKED)


def line_of(owner) -> list[bytes]:
    return redis.Redis.from_url(django_settings.REDIS_URL).lrange(
        f"importbeat:owner:{owner.pk}:line", 0, -1
    )


@pytest.mark.django_db(transaction=True)
def test_a_notification_is_parked_while_another_of_its_owner_is_sent_and_goes_after(
    bob, hook, sent
):
    delivery = notification(bob, hook.url)
    sent.clear()  # its first message

    # While another of bob's notifications is being sent, this one's task ends parked (RETRY,
    # saying why), and its log is as it was: waiting its turn is not one of its attempts
    with sending_for(bob) as mine:
        assert mine
        result = deliver_notification.apply(args=[delivery.pk], task_id="t-1", retries=3)
        assert parked(result)
        assert line_of(bob) == [f"{DELIVER} t-1 {delivery.pk} 3".encode()]
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.error) == ("pending", 0, "")
    assert not hook.requests

    # Once that one is done, this one's message is sent again, as a retry of its task (its id,
    # the retries it had)
    assert sent == [(DELIVER, "t-1", [delivery.pk], 3)]
    assert line_of(bob) == []
    assert deliver(delivery).status == "delivered"


@pytest.mark.django_db(transaction=True)
def test_owners_do_not_wait_on_one_another(alice, bob, hook, sent):
    alices = notification(alice, hook.url, "alice's feed")
    sent.clear()  # its first message
    with sending_for(bob):
        assert deliver_notification.apply(args=[alices.pk]).get() is None
    alices.refresh_from_db()
    assert alices.status == "delivered"
    assert sent == []


@pytest.mark.django_db(transaction=True)
def test_an_owners_emails_take_turns_on_their_mailbox_not_on_the_webhooks_turn(
    alice, mailoutbox, sent
):
    pending = email(alice)
    held = NotificationDelivery.objects.create(
        scheduled_import=pending.scheduled_import, run=pending.run, event="failed",
        channel="email", status="held",
    )  # fmt: skip
    with sending_for(alice):
        assert deliver_notification.apply(args=[pending.pk]).get() is None
        assert send_email_digest.apply(args=[alice.pk]).get() is None
    assert line_of(alice) == []
    held.refresh_from_db()
    assert held.status == "delivered"
    assert len(mailoutbox) == 1


@pytest.mark.django_db(transaction=True)
def test_the_sweep_sends_a_line_whose_turn_nobody_holds(bob, hook, sent):
    # Given a notification parked behind one whose worker died holding the turn
    delivery = notification(bob, hook.url)
    sent.clear()  # its first message
    store = redis.Redis.from_url(django_settings.REDIS_URL)
    store.set(f"importbeat:owner:{bob.pk}:notifying", "a dead worker's", ex=60)
    assert parked(deliver_notification.apply(args=[delivery.pk], task_id="t-1"))

    # While the turn is held, the sweep leaves the line alone; once it expired, it sends it
    assert owner_turns.send_stranded() == 0
    store.delete(f"importbeat:owner:{bob.pk}:notifying")
    assert maintenance.sweep_runs()["notifications"] == 1
    assert sent == [(DELIVER, "t-1", [delivery.pk], 0)]
    assert owner_turns.send_stranded() == 0
    assert not store.sismember(owner_turns.LINES, bob.pk)


@pytest.mark.django_db(transaction=True)
def test_a_parked_notification_the_broker_refused_stays_first_in_line(bob, hook, monkeypatch):
    delivery = notification(bob, hook.url)

    def refuse(*args, **kwargs):
        raise OperationalError("Connection refused")

    with sending_for(bob):
        assert parked(deliver_notification.apply(args=[delivery.pk], task_id="t-1"))
        monkeypatch.setattr(app, "send_task", refuse)
    assert line_of(bob) == [f"{DELIVER} t-1 {delivery.pk} 0".encode()]


@pytest.mark.django_db(transaction=True)
def test_without_redis_an_owners_notifications_go_as_they_come(bob, hook, monkeypatch):
    nowhere = redis.Redis(port=free_port(), socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0))
    monkeypatch.setattr(owner_turns, "client", lambda: nowhere)
    owner_turns._scripts.cache_clear()
    try:
        delivery = notification(bob, hook.url)
        assert deliver_notification.apply(args=[delivery.pk]).get() is None
        delivery.refresh_from_db()
        assert delivery.status == "delivered"
    finally:
        owner_turns._scripts.cache_clear()
