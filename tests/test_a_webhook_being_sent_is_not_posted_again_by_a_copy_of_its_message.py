"""A webhook being sent is not posted again by a copy of its message (snapshot hunt).

Redis restarted from a snapshot taken while a worker posted a notification puts that message
back in the queue: another worker slot took the copy and posted the notification a second time
while the first POST went on (two POSTs, the log saying `delivered` after one attempt). The
attempt now takes the notification (`sending_since`); a copy meanwhile asks again once that
attempt may have ended, and then finds it delivered. A copy of a message whose worker was lost
mid-send (its claim older than the task's hard time limit) sends it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta

import pytest
from celery import current_app

from common import database_clock
from common.redis_client import client
from schedules import notifications
from schedules.models import NotificationDelivery
from tasks import turns, webhooks
from tasks.tasks import NOTIFICATION_TASK
from tests.api_support import SOURCE, fail_run
from tests.conftest import wait_for
from tests.factories import make_import
from tests.webhook_support import Hook

COPY_WAITS = "waits: another delivery of its message is sending it (its message came twice)"


def notification_to(owner, hook: Hook) -> NotificationDelivery:
    imp = make_import(owner, SOURCE, notify_on=["failed"], notify_channels=["webhook"],
                      callback_url=hook.url)  # fmt: skip
    fail_run(imp)
    return NotificationDelivery.objects.get(scheduled_import=imp)


@pytest.mark.processes
@pytest.mark.django_db(transaction=True)
def test_a_copy_of_a_webhooks_message_while_it_is_posted_posts_nothing(alice, processes, settings):
    # Given a worker posting a notification to a receiver that holds its answer
    settings.ALLOWED_PRIVATE_HOSTS = ["127.0.0.1:*"]
    answer = threading.Event()
    hook = Hook(on_post=lambda n: n == 1 and answer.wait(30))
    try:
        processes.start("worker")
        delivery = notification_to(alice, hook)
        wait_for(lambda: len(hook.requests) == 1, 30, what="the first POST\n" + processes.logs())

        # When a copy of its message comes meanwhile, and its owner's turn is free (Redis
        # reloaded from an older snapshot, which had neither)
        client().delete(f"importbeat:turns:{turns.of_owner(alice.pk)}:holders")
        current_app.send_task(
            notifications.DELIVER, args=[delivery.pk], task_id=notifications.task_id(delivery.pk)
        )
        wait_for(
            lambda: COPY_WAITS in processes.logs() or len(hook.requests) > 1, 30,
            what="the copy\n" + processes.logs(),
        )  # fmt: skip
        answer.set()
        wait_for(
            lambda: NotificationDelivery.objects.get(pk=delivery.pk).status == "delivered", 30,
            what="the delivery\n" + processes.logs(),
        )  # fmt: skip
    finally:
        answer.set()
        hook.close()

    # Then the receiver got one POST, and the log says one attempt, ended
    assert len(hook.requests) == 1
    delivery.refresh_from_db()
    assert (delivery.attempts, delivery.sending_since) == (1, None)
    assert f"notification {delivery.pk} {COPY_WAITS}" in processes.logs()


@pytest.fixture
def hook(settings) -> Iterator[Hook]:
    """A receiver on this machine that answers at once."""
    settings.ALLOWED_PRIVATE_HOSTS = ["127.0.0.1:*"]
    receiver = Hook()
    yield receiver
    receiver.close()


@pytest.mark.django_db
def test_a_copy_asks_again_once_the_attempt_sending_it_may_have_ended(alice, hook):
    # Given a notification an attempt took a moment ago
    delivery = notification_to(alice, hook)
    taken = notifications.start(delivery.pk)
    assert isinstance(taken, NotificationDelivery)

    # When a copy of its message comes
    with pytest.raises(webhooks.RetryLater) as later:
        webhooks.deliver(delivery.pk)

    # Then it posts nothing, leaves the log as the attempt wrote it, and asks again when the
    # attempt's task has been killed at its time limit if it still runs
    assert hook.requests == []
    assert isinstance(later.value.error, webhooks.NotificationWaits)
    assert str(later.value) == f"notification {delivery.pk} {COPY_WAITS}"
    assert later.value.countdown > notifications.SENDING_CLAIM_SECONDS - 5
    assert later.value.countdown <= notifications.SENDING_CLAIM_SECONDS
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("pending", 1)


@pytest.mark.django_db
def test_a_copy_of_a_message_whose_worker_was_lost_mid_send_sends_it(alice, hook):
    # Given a notification an attempt took longer ago than its task may live (its worker lost)
    delivery = notification_to(alice, hook)
    long_ago = timedelta(seconds=notifications.SENDING_CLAIM_SECONDS + 1)
    NotificationDelivery.objects.filter(pk=delivery.pk).update(
        attempts=1, sending_since=database_clock.now() - long_ago
    )

    # When its message comes again
    assert webhooks.deliver(delivery.pk) is None

    # Then it is sent, as its second attempt
    assert len(hook.requests) == 1
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.sending_since) == ("delivered", 2, None)


def test_a_webhooks_claim_outlasts_its_tasks_hard_time_limit():
    # (a claim shorter than the task may live would let a copy post beside a live attempt)
    assert NOTIFICATION_TASK["time_limit"] < notifications.SENDING_CLAIM_SECONDS
