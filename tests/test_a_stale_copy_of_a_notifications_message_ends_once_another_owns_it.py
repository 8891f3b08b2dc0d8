"""A stale copy of a notification's message ends once another message owns it (endings hunt).

A copy of a `retrying` notification's message that comes before its next attempt is due (a
redelivery, Redis reloaded from a snapshot, a message from before a database restore) sends
nothing and asks again when the attempt is due (notifications.start). It asked again at every
attempt after that too, until the notification ended: found the attempt sending, it asked when
the claim would end; found the next attempt not due, it asked when that was. Against a receiver
answering 503, a worker's log had 34 lines of copies waiting (and Flower a RETRY each) for a
notification POSTed once a backoff. A copy now says what it saw when it asks again, and ends
once another message made an attempt since, or the attempt it found sending has ended: that
attempt's own retry, or the sweep, sends the next. It still takes an attempt whose taker died.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from celery import current_app

from common import database_clock
from schedules import notifications
from schedules.models import NotificationDelivery
from tasks import webhooks
from tests.conftest import wait_for
from tests.test_a_message_that_comes_before_a_notifications_next_attempt_sends_nothing import (
    alices_webhook_retrying,
    notification_to,
    posted_once_as_its_second_attempt,
)
from tests.webhook_support import Hook

WAITS = "waits: "
ENDS = "this copy of its message ends"
# When the copy comes back: time enough for another message to take the attempt first.
BACK_IN = 6.0


def a_worker_ready(processes) -> None:
    """A worker that takes messages as they come: the copy's wait is timed from when it came."""
    current_app.control.purge()  # (the notification's first message, sent as its run failed)
    processes.start("worker")
    wait_for(lambda: " ready." in processes.log_of("worker"), 60, what=processes.logs())


def copy_of_its_message(delivery: NotificationDelivery) -> None:
    """A copy of its retry's message, as a redelivery or a snapshot brings one back."""
    current_app.send_task(
        notifications.DELIVER, args=[delivery.pk], retries=1,
        task_id=notifications.task_id(delivery.pk),
    )  # fmt: skip


def logged_of(delivery: NotificationDelivery, processes) -> tuple[int, int]:
    """How many times the copy asked again, and ended, as the worker's log says."""
    log = processes.log_of("worker")
    # (the worker's own line: Celery's of the task's retry quotes its words too)
    waited = re.findall(rf"notification {delivery.pk} {WAITS}[^\n]*; asked again in", log)
    return len(waited), log.count(f"notification {delivery.pk}: {ENDS}")


def another_attempt_failed(delivery: NotificationDelivery) -> None:
    """As the retry due leaves it once its POST was answered 503: an attempt more, its next
    attempt ten minutes away (its own retry's message on its way for then)."""
    later = database_clock.now() + timedelta(minutes=10)
    logged(delivery, status="retrying", attempts=2, sending_since=None, next_attempt_at=later)


def copy_asked_again_then_ended(delivery: NotificationDelivery, hook: Hook, processes) -> None:
    wait_for(lambda: logged_of(delivery, processes)[0] >= 1, 60, what=processes.logs())
    another_attempt_failed(delivery)
    wait_for(lambda: sum(logged_of(delivery, processes)) >= 2, 60, what=processes.logs())
    processes.stop(processes.started[-1][1])
    # Then it asked again once, and ended when it came back, posting nothing
    assert logged_of(delivery, processes) == (1, 1), processes.log_of("worker")
    assert hook.requests == []
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("retrying", 2)


@contextmanager
def alices_webhook(settings, alice) -> Iterator[tuple[NotificationDelivery, Hook]]:
    """alice's webhook notification to a receiver answering 200, closed after."""
    settings.ALLOWED_PRIVATE_HOSTS = ["127.0.0.1:*"]
    hook = Hook()
    try:
        yield notification_to(alice, "webhook", hook.url), hook
    finally:
        hook.close()


def logged(delivery: NotificationDelivery, **fields: Any) -> None:
    NotificationDelivery.objects.filter(pk=delivery.pk).update(**fields)


@pytest.mark.processes
@pytest.mark.django_db(transaction=True)
def test_a_copy_that_came_before_the_attempt_due_ends_once_that_attempt_was_made(
    alice, processes, settings
):
    # Given alice's webhook waiting for its second attempt, a few seconds away, and a copy of
    # its message that comes now
    with alices_webhook(settings, alice) as (delivery, hook):
        a_worker_ready(processes)
        due = database_clock.now() + timedelta(seconds=BACK_IN)
        logged(delivery, status="retrying", attempts=1, next_attempt_at=due)
        copy_of_its_message(delivery)

        # When the attempt due is made by its own retry before the copy comes back
        copy_asked_again_then_ended(delivery, hook, processes)


@pytest.mark.processes
@pytest.mark.django_db(transaction=True)
def test_a_copy_that_found_an_attempt_sending_ends_once_that_attempt_ended(
    alice, processes, settings
):
    # Given alice's webhook whose second attempt another worker is making, its claim ending a
    # few seconds from now, and a copy of its message that comes meanwhile
    with alices_webhook(settings, alice) as (delivery, hook):
        a_worker_ready(processes)
        claimed = notifications.SENDING_CLAIM_SECONDS - BACK_IN
        taken = database_clock.now() - timedelta(seconds=claimed)
        logged(delivery, status="retrying", attempts=2, sending_since=taken)
        copy_of_its_message(delivery)

        # When that attempt ends (answered 503, its own retry sent for later)
        copy_asked_again_then_ended(delivery, hook, processes)


@pytest.mark.django_db
def test_a_copy_that_found_an_attempt_sending_takes_it_when_that_worker_died(alice, settings):
    # Given alice's webhook, whose attempt a copy of its message found sending, and whose
    # worker died then (its claim went stale)
    with alices_webhook(settings, alice) as (delivery, hook):
        stale = notifications.SENDING_CLAIM_SECONDS + 1
        taken = database_clock.now() - timedelta(seconds=stale)
        logged(delivery, status="retrying", attempts=2, sending_since=taken)

        # When the copy comes back
        assert webhooks.deliver(delivery.pk, seen={"attempts": 2, "taken": True}) is None

    # Then it takes the attempt and posts it
    assert len(hook.requests) == 1
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("delivered", 3)


@pytest.mark.django_db
def test_a_copy_that_asked_again_takes_the_attempt_due_when_no_other_message_did(alice, settings):
    # Given alice's webhook whose second attempt is due, and no message took it (a database
    # restore took back the retry that would have)
    with alices_webhook_retrying(settings, alice, due_in=0) as (delivery, hook):
        # When the copy that asked again for it comes
        assert webhooks.deliver(delivery.pk, seen={"attempts": 1}) is None

    # Then it is posted, as its second attempt
    posted_once_as_its_second_attempt(delivery, hook)
