"""A receiver that is slow but answers holds one worker slot at most, not every slot.

A callback that answers each POST after a few seconds (well inside the read timeout, so it is
never taken as not answering) took a worker slot for those seconds per notification: a user
whose imports failed together held every slot of the worker until their notifications were
through, and every other user's run waited behind them in the queue. Now an owner's
notifications are sent one at a time: the others of that owner are parked in their owner's line
and sent again, their attempts as they were, when the one before is done; the slots are free
meanwhile for everyone else (tasks/turns.py). E-mails that go out take the mail relay's
turns (EMAIL_CONCURRENCY), so a relay that takes a second an e-mail holds that many slots.
"""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
import redis
from django.conf import settings as django_settings
from django.utils import timezone
from kombu.exceptions import OperationalError
from redis.backoff import NoBackoff
from redis.retry import Retry

from project.celery import app
from project.devservices import free_port
from schedules import notifications
from schedules.email_digest import SEND_DIGEST
from schedules.models import NotificationDelivery, OwnerMailbox
from schedules.notifications import DELIVER
from tasks import maintenance, turns
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
from tests.webhook_support import Hook, Slow, forget_redis_keys

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
    assert f"retry: {OWNER_BUSY}" in processes.logs()


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
    forget_redis_keys("importbeat:turns:*")


def sending_for(owner):
    """Another worker sending one of `owner`'s webhooks meanwhile (holding their turn)."""
    return turns.turn(turns.of_owner(owner.pk), turns.Job(DELIVER, "another", 0, 0))


def mailing():
    """Another worker sending an e-mail meanwhile (holding one of the relay's turns)."""
    job = turns.Job(DELIVER, "another", 0, 0)
    return turns.turn(turns.MAIL, job, django_settings.EMAIL_CONCURRENCY)


OWNER_BUSY = "waiting its turn: another webhook of the same owner is being sent"
RELAY_BUSY = "waiting its turn: the mail relay is taking {} e-mail(s) already (EMAIL_CONCURRENCY)"


def parked(result, why: str = OWNER_BUSY) -> bool:
    """A task that ended parked: in RETRY, saying why."""
    return (result.state, str(result.result)) == ("RETRY", why)


def line_of(owner) -> list[bytes]:
    return line(turns.of_owner(owner.pk))


def line(key: str) -> list[bytes]:
    return redis.Redis.from_url(django_settings.REDIS_URL).lrange(
        f"importbeat:turns:{key}:line", 0, -1
    )


@pytest.mark.django_db(transaction=True)
def test_a_notification_is_parked_while_another_of_its_owner_is_sent_and_goes_after(
    bob, hook, sent
):
    delivery = notification(bob, hook.url)
    sent.clear()  # its first message

    # While another of bob's notifications is being sent, this one's task ends parked (RETRY,
    # saying why), and its log is as it was: waiting its turn is not one of its attempts
    with sending_for(bob):
        result = deliver_notification.apply(args=[delivery.pk], task_id="t-1", retries=3)
        assert parked(result)
        assert line_of(bob) == [f"{DELIVER} t-1 {delivery.pk} 3".encode()]
        assert turns.parked(DELIVER, [delivery.pk, 0]) == {delivery.pk}
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.error) == ("pending", 0, "")
    assert not hook.requests

    # Once that one is done, this one's message is sent again, as a retry of its task (its id,
    # the retries it had)
    assert sent == [(DELIVER, "t-1", [delivery.pk], 3)]
    assert line_of(bob) == []
    assert turns.parked(DELIVER, [delivery.pk]) == set()
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
def test_an_email_that_goes_out_waits_for_the_relays_turn_and_one_held_does_not(
    alice, bob, mailoutbox, sent
):
    # Given an e-mail of alice's to go out now, and one of bob's that his digest holds
    # (he was e-mailed a moment ago)
    alices = email(alice)
    bobs = email(bob)
    OwnerMailbox.objects.create(user=bob, last_sent_at=timezone.now())

    # While another e-mail is being sent, alice's is parked, bob's is held at once
    with mailing():
        assert parked(
            deliver_notification.apply(args=[alices.pk], task_id="t-1"), RELAY_BUSY.format(1)
        )
        assert deliver_notification.apply(args=[bobs.pk]).state == "SUCCESS"
        # so is bob's digest when it is due
        assert parked(send_email_digest.apply(args=[bob.pk], task_id="t-2"), RELAY_BUSY.format(1))
    bobs.refresh_from_db()
    assert (bobs.status, len(mailoutbox)) == ("held", 0)
    assert line(turns.MAIL) == [f"{SEND_DIGEST} t-2 {bob.pk} 0".encode()]
    assert [message for message in sent if message[0] == DELIVER] == [
        (DELIVER, "t-1", [alices.pk], 0)
    ]

    # When alice's comes again (the turn kept for it), it goes and hands the turn on to bob's
    # digest
    assert deliver_notification.apply(args=[alices.pk], task_id="t-1").state == "SUCCESS"
    assert sent[-1] == (SEND_DIGEST, "t-2", [bob.pk], 0)
    assert line(turns.MAIL) == []
    assert len(mailoutbox) == 1


@pytest.mark.django_db(transaction=True)
def test_emails_go_as_many_at_once_as_email_concurrency_says(alice, bob, mailoutbox, settings):
    settings.EMAIL_CONCURRENCY = 2
    with mailing():
        assert deliver_notification.apply(args=[email(alice).pk]).state == "SUCCESS"
    with mailing(), mailing():
        assert parked(deliver_notification.apply(args=[email(bob).pk]), RELAY_BUSY.format(2))
    assert len(mailoutbox) == 1


@pytest.mark.django_db(transaction=True)
def test_the_sweep_sends_a_line_whose_turn_nobody_holds(bob, hook, sent):
    # Given a notification parked behind one whose worker died holding the turn
    delivery = notification(bob, hook.url)
    sent.clear()  # its first message
    store = redis.Redis.from_url(django_settings.REDIS_URL)
    holders = f"importbeat:turns:{turns.of_owner(bob.pk)}:holders"
    store.zadd(holders, {"a dead worker's": time.time() + 60})
    assert parked(deliver_notification.apply(args=[delivery.pk], task_id="t-1"))

    # While the turn is held, the sweep leaves the line alone; once it expired, it sends it
    assert turns.send_stranded() == 0
    store.zadd(holders, {"a dead worker's": time.time() - 1})
    assert maintenance.sweep_runs()["notifications"] == 1
    assert sent == [(DELIVER, "t-1", [delivery.pk], 0)]
    assert turns.send_stranded() == 0
    # its turn kept for it until it comes; then it goes, and the empty line is forgotten
    assert store.zrange(holders, 0, -1) == [b"sent:t-1"]
    assert deliver_notification.apply(args=[delivery.pk], task_id="t-1").state == "SUCCESS"
    assert not store.exists(holders)
    assert not store.hexists(turns.LINES, turns.of_owner(bob.pk))


@pytest.mark.django_db(transaction=True)
def test_a_parked_notification_the_broker_refused_stays_first_in_line(bob, hook, monkeypatch):
    delivery = notification(bob, hook.url)

    def refuse(*args, **kwargs):
        raise OperationalError("Connection refused")

    with sending_for(bob):
        assert parked(deliver_notification.apply(args=[delivery.pk], task_id="t-1"))
        monkeypatch.setattr(app, "send_task", refuse)
    assert line_of(bob) == [f"{DELIVER} t-1 {delivery.pk} 0".encode()]
    assert turns.parked(DELIVER, [delivery.pk]) == {delivery.pk}  # the sweep leaves it there


@pytest.mark.django_db(transaction=True)
def test_without_redis_an_owners_notifications_go_as_they_come(bob, hook, monkeypatch):
    nowhere = redis.Redis(port=free_port(), socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0))
    monkeypatch.setattr(turns, "client", lambda: nowhere)
    turns._scripts.cache_clear()
    try:
        delivery = notification(bob, hook.url)
        assert deliver_notification.apply(args=[delivery.pk]).get() is None
        delivery.refresh_from_db()
        assert delivery.status == "delivered"
    finally:
        turns._scripts.cache_clear()


@pytest.mark.django_db(transaction=True)
def test_the_sweep_leaves_alone_notifications_waiting_in_a_long_line(bob, hook, sent, settings):
    """A line longer than STALE_QUEUED_SECONDS (600 webhooks to a receiver that answers in 3 s,
    or 2,000 owners' e-mails through a relay that takes a second each) held notifications
    `pending` past it, or `retrying` past their next attempt: the sweep took them for lost and
    sent each again, up to 500 a minute, and each copy came to its turn and was sent again: a
    webhook or an e-mail twice, and the line grew by 500 a minute."""
    # Given two notifications parked a long time behind one of bob's that is being sent
    waiting, retrying = notification(bob, hook.url, "a"), notification(bob, hook.url, "b")
    sent.clear()  # their first messages
    redis.Redis.from_url(django_settings.REDIS_URL).zadd(
        f"importbeat:turns:{turns.of_owner(bob.pk)}:holders", {"a live worker's": time.time() + 60}
    )
    assert parked(deliver_notification.apply(args=[waiting.pk], task_id="t-1"))
    assert parked(deliver_notification.apply(args=[retrying.pk], task_id="t-2", retries=1))
    long_ago = timezone.now() - timedelta(seconds=settings.STALE_QUEUED_SECONDS + 60)
    NotificationDelivery.objects.filter(pk=waiting.pk).update(created_at=long_ago)
    NotificationDelivery.objects.filter(pk=retrying.pk).update(
        created_at=long_ago, status="retrying", attempts=1, next_attempt_at=long_ago
    )

    # When the sweep looks, then it sends neither: they are waiting, not lost
    assert maintenance.sweep_runs()["notifications"] == 0
    assert sent == []

    # And once their line is lost (a Redis restarted empty), it sends them again
    forget_redis_keys("importbeat:turns:*")
    assert maintenance.sweep_runs()["notifications"] == 2
    assert sorted(args[0] for _name, _id, args, _retries in sent) == sorted(
        [waiting.pk, retrying.pk]
    )


@pytest.mark.django_db(transaction=True)
def test_the_sweep_finds_a_lost_notification_behind_more_parked_than_it_looks_at(
    bob, hook, sent, settings, monkeypatch
):
    """The sweep looks at RESEND_LOOKS waiting notifications a pass (20,000). A lost one behind
    more parked ones than that waited until the lines drained: every pass looked at the same
    parked ones first. Each pass now goes on from where the last one stopped."""
    monkeypatch.setattr(notifications, "RESEND_BATCH", 2)
    monkeypatch.setattr(notifications, "RESEND_LOOKS", 2)
    forget_redis_keys(notifications.RESEND_CURSOR_KEY)
    # Given four notifications parked behind one of bob's that is being sent, and then one
    # whose message was lost
    redis.Redis.from_url(django_settings.REDIS_URL).zadd(
        f"importbeat:turns:{turns.of_owner(bob.pk)}:holders", {"a live worker's": time.time() + 60}
    )
    waiting = [notification(bob, hook.url, f"w{n}") for n in range(4)]
    for number, delivery in enumerate(waiting):
        assert parked(deliver_notification.apply(args=[delivery.pk], task_id=f"t-{number}"))
    lost = notification(bob, hook.url, "lost")
    sent.clear()
    long_ago = timezone.now() - timedelta(seconds=settings.STALE_QUEUED_SECONDS + 60)
    for seconds, delivery in enumerate([*waiting, lost]):
        NotificationDelivery.objects.filter(pk=delivery.pk).update(
            created_at=long_ago + timedelta(seconds=seconds)
        )

    try:
        # When the sweep passes three times, looking at two a pass
        found = [maintenance.sweep_runs()["notifications"] for _ in range(3)]
    finally:
        forget_redis_keys(notifications.RESEND_CURSOR_KEY)

    # Then the third pass, having gone past the parked ones, sends the lost one, and only it
    assert found == [0, 0, 1]
    assert sent == [(DELIVER, notifications.task_id(lost.pk), [lost.pk], 0)]
