"""A notification that failed for good fails its task: Flower says FAILURE with the error of
the delivery log. Before, the task ended SUCCESS whatever became of the notification, so
Flower showed a callback that refused every try like one that took it."""

from __future__ import annotations

from datetime import timedelta

import pytest
import requests
from django.utils import timezone

from project.devservices import free_port
from schedules.models import NotificationDelivery, OwnerMailbox
from tasks import webhooks
from tests.api_support import SOURCE, fail_run, make_run
from tests.conftest import wait_for
from tests.factories import make_import
from tests.reliability import start_flower
from tests.webhook_support import Hook

AUTH = ("ops", "s3cret-flower")
DELIVER = "importbeat.deliver_notification"


def hooked(owner, url: str, name: str):
    return make_import(owner, SOURCE, name=name, dataset=name, notify_on=["failed"],
                       notify_channels=["webhook"], callback_url=url)  # fmt: skip


def delivery_tasks(base: str) -> dict[int, dict] | None:
    """Flower's deliveries in a final state, by delivery id (their task's one argument)."""
    answer = requests.get(f"{base}/api/tasks", params={"taskname": DELIVER}, auth=AUTH, timeout=5)
    found = {int(task["args"].strip("[](),")): task for task in answer.json().values()}
    if found and all(task["state"] in ("SUCCESS", "FAILURE") for task in found.values()):
        return found
    return None


@pytest.mark.processes
@pytest.mark.django_db(transaction=True)
def test_flower_shows_a_refused_notification_failed_and_a_delivered_one_succeeded(
    alice, processes, settings
):
    # Given a worker and Flower, and two callbacks: one that refuses, one that takes the POST
    settings.ALLOWED_PRIVATE_HOSTS = ["127.0.0.1:*"]
    refusing, taking = Hook(statuses=[404]), Hook()
    try:
        processes.start("worker")
        base = start_flower(processes, AUTH)

        # When a run of an import notifying each fails
        fail_run(hooked(alice, refusing.url, "refused"))
        fail_run(hooked(alice, taking.url, "taken"))
        log = NotificationDelivery.objects.order_by("pk")
        wait_for(
            lambda: len(delivery_tasks(base) or ()) == 2, 30, what="flower\n" + processes.logs()
        )
    finally:
        refusing.close()
        taking.close()

    # Then Flower says FAILURE for the refused one, with its log's words, SUCCESS for the other
    refused, taken = log
    assert (refused.status, taken.status) == ("failed", "delivered")
    flower = delivery_tasks(base)
    assert flower[taken.pk]["state"] == "SUCCESS"
    assert flower[refused.pk]["state"] == "FAILURE"
    assert (
        f"notification {refused.pk} (failed, webhook) failed: the callback answered HTTP 404"
        in flower[refused.pk]["exception"]
    )
    # and the worker's log has no traceback for it: the delivery log says why
    assert "Traceback" not in processes.logs()


@pytest.mark.django_db
def test_an_owners_held_emails_that_failed_for_good_say_why_to_their_task(alice, settings):
    # Given a held e-mail and no mail server where EMAIL_URL points
    imp = make_import(alice, SOURCE, notify_on=["failed"], notify_channels=["email"])
    held = NotificationDelivery.objects.create(
        scheduled_import=imp, run=make_run(imp, "failed"), event="failed", channel="email",
        status="held",
    )  # fmt: skip
    OwnerMailbox.objects.create(user=alice, last_sent_at=timezone.now() - timedelta(hours=1))
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", free_port()

    # When the owner's message has its last try, then what fails its task says why
    # (the task raises NotificationFailed with it, as deliver_notification does above)
    assert webhooks.send_digest(alice.pk, final=True) == (
        f"the e-mail of user {alice.pk}'s held notifications failed: cannot reach the mail "
        f"server 127.0.0.1:{settings.EMAIL_PORT} (Connection refused)"
    )
    held.refresh_from_db()
    assert held.status == "failed"
