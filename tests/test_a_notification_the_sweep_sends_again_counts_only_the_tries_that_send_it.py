"""A notification the sweep sends again counts only the tries that send it (notify hunt).

An attempt is a delivery tried: a POST made, an e-mail handed to the mail server. A message
lost on the broker, and the sweep's resend of it, are none. A webhook's was already so (its
attempt is counted as a worker takes it to POST). An e-mail held for its owner's next one was
counted as held, with nothing sent: the log said `held`, `attempts: 1`. When the owner's message
that sends the held ones was lost (a Redis restart), the sweep sent the held e-mail again, and
its first try was counted a second time: it was `delivered` after 2 attempts, one e-mail sent,
and against a mail server away it failed for good after 5 tries, its MAX_RETRIES spent a try
early. A hold now counts none; the owner's e-mail that carries it counts its try.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from celery import current_app
from django.utils import timezone

from schedules import email_digest, notifications
from schedules.models import NotificationDelivery, OwnerMailbox
from tasks import destinations, webhooks
from tasks.mail_errors import mail_server
from tests.api_support import API, client_for, fail_run
from tests.conftest import wait_for
from tests.reliability import FAST
from tests.smtp_support import smtp_server
from tests.test_a_callback_that_never_answers_holds_back_no_one_else import deliver
from tests.test_email_digest import emailing
from tests.webhook_support import Hook, failed_run_notified

DIGEST_SECONDS = 300


def lost_for_an_hour(delivery_id: int) -> None:
    """The notification has waited an hour, its message lost: past the sweep's patience."""
    current_app.control.purge()
    an_hour_ago = timezone.now() - timedelta(hours=1)
    NotificationDelivery.objects.filter(pk=delivery_id).update(created_at=an_hour_ago)
    OwnerMailbox.objects.update(last_sent_at=an_hour_ago, digest_due_at=None)


def sweep() -> int:
    """The sweep's pass over lost notifications (tasks.maintenance.sweep_runs's part)."""
    return notifications.resend_lost(timezone.now() - timedelta(seconds=1))


@pytest.fixture(autouse=True)
def _mail_server_answers():
    # The mail server's wait is in the suite's Redis: one noted by another test (or by the
    # refusals below) is not this test's.
    destinations.answered(mail_server())
    yield
    destinations.answered(mail_server())


def held_email(owner) -> NotificationDelivery:
    """Given the owner e-mailed a moment ago, an e-mail notification that comes meanwhile,
    delivered by its message (the task's body): held for the owner's next e-mail."""
    first_import, second_import = emailing(owner, 2)
    fail_run(first_import)
    webhooks.deliver(NotificationDelivery.objects.get(scheduled_import=first_import).pk)
    fail_run(second_import)
    held = NotificationDelivery.objects.get(scheduled_import=second_import)
    webhooks.deliver(held.pk)
    held.refresh_from_db()
    return held


@pytest.mark.processes
@pytest.mark.django_db(transaction=True)
def test_a_held_email_the_sweep_sends_again_is_delivered_after_the_one_try_that_sent_it(
    alice, processes, settings
):
    # Given alice's e-mail held for her next one, no e-mail tried
    settings.EMAIL_DIGEST_SECONDS = DIGEST_SECONDS
    held = held_email(alice)
    assert (held.status, held.attempts) == ("held", 0), "a hold is no try"

    # When the owner's message that sends it is lost, and the sweep sends it again to a worker
    # with a mail server
    lost_for_an_hour(held.pk)
    with smtp_server() as (url, mailbox):
        processes.start("worker", EMAIL_URL=url, EMAIL_DIGEST_SECONDS=str(DIGEST_SECONDS), **FAST)
        assert sweep() == 1
        wait_for(
            lambda: NotificationDelivery.objects.filter(pk=held.pk, status="delivered").exists(),
            30, what=processes.logs(),
        )  # fmt: skip
        sent = len(mailbox.received())

    # Then it went out in one e-mail, and its log says one attempt
    assert sent == 1
    log = client_for(alice).get(f"{API}/imports/{held.scheduled_import_id}/deliveries/").json()
    assert [(d["status"], d["attempts"]) for d in log["results"]] == [("delivered", 1)]


@pytest.mark.django_db
def test_a_held_email_the_sweep_sends_again_has_all_its_tries(alice, settings, monkeypatch):
    # Given alice's e-mail held for her next one, the owner's message that sends it lost, and
    # a mail server that refuses every connection
    settings.EMAIL_DIGEST_SECONDS = DIGEST_SECONDS
    held = held_email(alice)
    lost_for_an_hour(held.pk)
    tries: list[str] = []

    def refused(subject: str, message: str, address: str) -> None:
        tries.append(subject)
        raise ConnectionRefusedError(111, "Connection refused")

    monkeypatch.setattr(email_digest, "send_email", refused)
    sent: list[int] = []
    monkeypatch.setattr(
        notifications.current_app, "send_task", lambda name, args, **_: sent.extend(args)
    )

    # When the sweep sends it again, and each of its retries comes when due
    assert sweep() == 1
    assert sent == [held.pk]
    log = held
    for _ in range(2 * webhooks.MAX_RETRIES):
        destinations.answered(mail_server())  # (the server's wait over: each retry tries it)
        log = deliver(log)
        if log.status == "failed":
            break

    # Then it failed for good after every try it was due, each one attempt in its log
    assert len(tries) == webhooks.MAX_RETRIES + 1
    assert (log.status, log.attempts) == ("failed", webhooks.MAX_RETRIES + 1)


@pytest.mark.processes
@pytest.mark.django_db(transaction=True)
def test_a_webhook_lost_twice_on_the_broker_is_at_its_first_attempt_when_posted(alice, processes):
    # Given a webhook whose message was lost, and the sweep's resend of it lost twice more
    receiver = Hook(statuses=[503])
    try:
        delivery = failed_run_notified(alice, receiver.url)
        for _ in range(2):
            lost_for_an_hour(delivery.pk)
            assert sweep() == 1
        lost_for_an_hour(delivery.pk)
        delivery.refresh_from_db()
        assert (delivery.status, delivery.attempts) == ("pending", 0)

        # When the sweep sends it again to a worker, and its receiver answers 503, then 200
        processes.start("worker", **FAST)
        assert sweep() == 1
        # (Waited for delivered, not for retrying: the retry's full jitter can be 0 s, and a
        # retrying of a few milliseconds went unseen between two polls, once in CI.)
        delivered = NotificationDelivery.objects.filter(pk=delivery.pk, status="delivered")
        wait_for(delivered.exists, 30, what="the retry delivered")
        posts = len(receiver.requests)
    finally:
        receiver.close()

    # Then its log counted the first POST as attempt 1 and the second as attempt 2, not the
    # messages sent
    delivery.refresh_from_db()
    assert (posts, delivery.attempts, delivery.response_status) == (2, 2, 200)
    first_post = r"notification retrying import=\d+ event=failed channel=webhook attempts=1\n"
    assert re.search(first_post, processes.log_of("worker")), processes.log_of("worker")
