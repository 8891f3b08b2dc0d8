"""A notification's attempts are counted by its log, not by its message's retries (restore2
hunt).

A database restored from a backup gives the next notifications the ids of those created in the
lost hour, whose messages are still in the broker, each under its notification's one task id
and with the retries Celery counted. Bob's new e-mail took the id of alice's, whose fifth retry
waited in the queue: that message tried bob's e-mail as its sixth attempt, its last, and the
mail server away, it failed for good at its first try. Each attempt now counts itself in the
log (a webhook's as its attempt takes it), so a message's retries decide nothing.
"""

from __future__ import annotations

import pytest
from celery import current_app

from project.devservices import free_port
from schedules import notifications
from schedules.models import NotificationDelivery
from tests.api_support import SOURCE, fail_run
from tests.conftest import wait_for
from tests.factories import make_import
from tests.reliability import FAST

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]


def test_a_message_carrying_another_notifications_retries_takes_no_attempt_of_them(bob, processes):
    # Given bob's e-mail notification, and a message under its id that Celery counted as the
    # fifth retry of another (alice's, lost with the hour a restore took back)
    imp = make_import(bob, SOURCE, notify_on=["failed"], notify_channels=["email"])
    fail_run(imp)
    delivery = NotificationDelivery.objects.get(scheduled_import=imp)
    current_app.send_task(
        notifications.DELIVER, args=[delivery.pk], task_id=notifications.task_id(delivery.pk),
        retries=5,
    )  # fmt: skip

    # When a worker takes both messages while the mail server is away
    processes.start(
        "worker", EMAIL_DIGEST_SECONDS="0", EMAIL_URL=f"smtp://127.0.0.1:{free_port()}", **FAST
    )
    wait_for(
        lambda: NotificationDelivery.objects.get(pk=delivery.pk).attempts == 2, 30,
        what="both messages\n" + processes.logs(),
    )  # fmt: skip

    # Then each was one attempt of bob's e-mail, which retries: not failed for good at its
    # first try, counted as its sixth
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("retrying", 2), delivery.error
