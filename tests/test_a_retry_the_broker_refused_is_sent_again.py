"""A notification whose retry the broker refused is sent again by the sweep, its count going on.

A webhook's attempt failed (its receiver answered 503) while the broker was down: the delivery
log said `retrying`, Celery could not send the retry's message and dropped the task (it rejects
the message when the retry cannot be sent). Nothing would ever try again: the sweep sent again
only the notifications still `pending`, so the delivery stayed `retrying` for ever, the same
when a Redis restarted without persistence lost a retry waiting for its time. The delivery log
now keeps when the next attempt is due (`next_attempt_at`), and the sweep sends again a
`retrying` notification STALE_QUEUED_SECONDS after that (notifications.resend_lost).
"""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from project.celery import app
from project.devservices import free_port
from schedules import notifications
from schedules.models import NotificationDelivery
from tasks import webhooks
from tasks.tasks import deliver_notification, sweep_runs
from tests.conftest import wait_for
from tests.reliability import FAST, redis_server, start_flower
from tests.test_a_callback_that_never_answers_holds_back_no_one_else import deliver, notification
from tests.test_a_notification_that_failed_for_good_fails_its_task import AUTH, delivery_tasks
from tests.webhook_support import Hook, Slow

ANSWER_SECONDS = 2.0


@pytest.mark.processes
@pytest.mark.django_db(transaction=True)
def test_a_retry_lost_with_the_broker_is_sent_again_by_the_sweep(
    alice, processes, tmp_path, settings
):
    settings.ALLOWED_PRIVATE_HOSTS = ["127.0.0.1:*"]
    receiver = Slow(ANSWER_SECONDS)
    receiver.statuses = [503]  # the first POST: then 200
    try:
        delivery = notification(alice, receiver.url)
        with redis_server(free_port(), tmp_path) as server:
            # Given a worker on its own Redis, and a sweep that counts a message lost quickly
            env = {**FAST, "REDIS_URL": server.url, "CELERY_BROKER_URL": server.url,
                   "STALE_QUEUED_SECONDS": "1"}  # fmt: skip
            processes.start("worker", **env)
            flower = start_flower(processes, AUTH, **env)
            with app.connection_for_write(server.url) as conn:
                deliver_notification.apply_async(
                    args=[delivery.pk], task_id=notifications.task_id(delivery.pk), connection=conn
                )

            # When the broker goes down while the receiver is answering 503, and comes back
            # empty, as a Redis without persistence does
            wait_for(lambda: receiver.answering == 1, 30, what=processes.logs())
            server.kill()
            wait_for(
                lambda: NotificationDelivery.objects.filter(
                    pk=delivery.pk, status="retrying"
                ).exists(),
                30,
                what=processes.logs(),
            )
            # (the retry's message refused meanwhile, the task ending without it)
            wait_for(
                lambda: "its retry was not sent" in worker_log(processes), 60,
                what=processes.logs(),
            )  # fmt: skip
            server.start()
            retrying = NotificationDelivery.objects.get(pk=delivery.pk)
            assert retrying.attempts == 1
            assert retrying.next_attempt_at is not None

            # Then the sweep sends it again once its next attempt is long due, and it arrives
            # at its second attempt
            def delivered() -> NotificationDelivery | None:
                with app.connection_for_write(server.url) as conn:
                    sweep_runs.apply_async(connection=conn)
                time.sleep(1)
                return NotificationDelivery.objects.filter(
                    pk=delivery.pk, status="delivered"
                ).first()

            done = wait_for(delivered, 60, interval=0, what=processes.logs())
    finally:
        receiver.close()
    assert (done.attempts, done.response_status, done.next_attempt_at) == (2, 200, None)
    assert len(receiver.requests) == 2
    # and the worker said so in words, where Celery's rejection had logged a traceback
    said = worker_log(processes)
    assert (
        "retry: the callback answered HTTP 503 (its retry was not sent, cannot reach the"
        " broker: connection refused: the sweep sends it again 1 s after it is due)" in said
    )
    assert "reject requeue=False" not in said
    # and Flower lists the notification's one task, succeeded: the sweep sent it again under
    # its id (before, a new task succeeded beside the first, listed in RETRY for ever)
    tasks = wait_for(lambda: delivery_tasks(flower), 30, what="flower\n" + processes.logs())
    assert {pk: task["state"] for pk, task in tasks.items()} == {delivery.pk: "SUCCESS"}


def worker_log(processes) -> str:
    return processes.log_of("worker")


@pytest.mark.django_db
def test_the_sweep_sends_again_the_retries_long_due_with_their_attempts(
    alice, settings, monkeypatch
):
    # Given two webhooks whose first attempt was answered 503, their retries' messages lost
    settings.ALLOWED_PRIVATE_HOSTS = ["127.0.0.1:*"]
    sent: list[tuple[str, str | None, list[int], int]] = []

    def keep(name, args, retries=0, task_id=None, **_):
        sent.append((name, task_id, args, retries))

    monkeypatch.setattr(notifications.current_app, "send_task", keep)
    receiver = Hook(statuses=[503, 503])
    try:
        # (the retry's delay is jittered from 0: measured from before the attempt, not after
        # it, or a delay near 0 read as one in the past on a loaded machine)
        before = timezone.now()
        late, soon = deliver(notification(alice, receiver.url, "late")), None
        after = timezone.now()
        soon = deliver(notification(alice, receiver.url, "soon"))
    finally:
        receiver.close()
    assert (late.status, late.attempts, soon.status) == ("retrying", 1, "retrying")
    backoff = timedelta(seconds=webhooks.BACKOFF_SECONDS)
    assert before <= late.next_attempt_at <= after + backoff
    sent.clear()
    stale = timezone.now() - timedelta(seconds=settings.STALE_QUEUED_SECONDS)
    NotificationDelivery.objects.filter(pk=late.pk).update(
        next_attempt_at=stale - timedelta(seconds=1)
    )
    NotificationDelivery.objects.filter(pk=soon.pk).update(
        next_attempt_at=stale + timedelta(seconds=1)
    )

    # When the sweep looks
    assert notifications.resend_lost(stale) == 1

    # Then only the one long due is sent again, as its second attempt
    assert sent == [(notifications.DELIVER, f"importbeat-notification-{late.pk}", [late.pk], 1)]


@pytest.mark.django_db
def test_a_notification_failed_for_good_has_no_next_attempt(alice, settings):
    settings.ALLOWED_PRIVATE_HOSTS = ["127.0.0.1:*"]
    receiver = Hook(statuses=[404])
    try:
        refused = deliver(notification(alice, receiver.url))
    finally:
        receiver.close()
    assert (refused.status, refused.next_attempt_at) == ("failed", None)
