"""A stale message of an owner's e-mail does not spend the retries of the e-mails it carries.

The task that sends an owner's held e-mails (importbeat.send_email_digest) counted its
attempts by its message's retries. A stale message with a high count (one from before a
database restore, Redis reloaded from a snapshot) that came once their interval was over sent
them as their last attempt: the mail server away a moment, every e-mail held failed for good at
its first try, an alert among them, where MAX_RETRIES tries were its due (endings hunt). Each
e-mail's attempts are now counted in its own log, at each try of the owner's e-mail, and the
retries it has left are counted from them: only an e-mail that has had its last attempt fails
for good, whatever message carried it.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from celery import current_app
from django.utils import timezone

from project.devservices import free_port
from schedules import email_digest
from schedules.models import NotificationDelivery, OwnerMailbox
from tasks import destinations, webhooks
from tasks.mail_errors import mail_server
from tests.api_support import fail_run
from tests.conftest import wait_for
from tests.test_email_digest import emailing


def held_emails(owner, count: int = 2) -> list[int]:
    """The owner's e-mails held for their next one, whose interval is over."""
    for imp in emailing(owner, count):
        fail_run(imp)
    NotificationDelivery.objects.update(status="held", attempts=0)  # (a hold counts no try)
    OwnerMailbox.objects.create(user=owner, last_sent_at=timezone.now() - timedelta(hours=1))
    return list(NotificationDelivery.objects.values_list("pk", flat=True))


@pytest.mark.processes
@pytest.mark.django_db(transaction=True)
def test_a_stale_message_with_a_high_retry_count_leaves_the_emails_their_retries(alice, processes):
    # Given alice's two e-mails held for her next one, its interval over, and no mail server
    # where EMAIL_URL points
    held = held_emails(alice)
    current_app.control.purge()  # (their own messages: the owner's carries them)
    port = free_port()

    # When a stale message of her e-mail comes, its retries those of a last attempt
    current_app.send_task(email_digest.SEND_DIGEST, args=[alice.pk], retries=webhooks.MAX_RETRIES)
    worker = processes.start("worker", EMAIL_URL=f"smtp://127.0.0.1:{port}")
    wait_for(
        lambda: not NotificationDelivery.objects.filter(pk__in=held, status="held").exists(),
        60, what=processes.logs(),
    )  # fmt: skip
    processes.stop(worker)

    # Then the e-mails wait for their next try, this one counted as their first
    told = f"cannot reach the mail server 127.0.0.1:{port} (Connection refused)"
    log = NotificationDelivery.objects.filter(pk__in=held)
    assert set(log.values_list("status", "attempts")) == {("retrying", 1)}
    # (a second message of hers that came within the server's wait, under load, says it as
    # the wait: it failed so once in CI; it takes no attempt)
    waited = re.compile(
        rf"not sent: the mail server 127\.0\.0\.1:{port} did not answer another notification "
        r"at [0-9:]+ UTC: Connection refused"
    )
    errors = set(log.values_list("error", flat=True))
    assert all(error == told or waited.fullmatch(error) for error in errors), errors
    assert not log.filter(next_attempt_at__isnull=True).exists()


@pytest.mark.django_db
def test_each_email_fails_for_good_at_its_own_last_attempt(alice, settings):
    # Given alice's e-mail, a try of her e-mail from its last attempt, and another held since
    first, _other = held_emails(alice)
    NotificationDelivery.objects.filter(pk=first).update(
        status="retrying", attempts=webhooks.MAX_RETRIES,
        next_attempt_at=timezone.now() - timedelta(seconds=1),
    )  # fmt: skip
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", free_port()

    # When her e-mail is tried again, and the mail server is still away
    with pytest.raises(webhooks.RetryLater):
        webhooks.send_digest(alice.pk)

    # Then the first has had its last attempt and failed for good; the other waits for its next
    log = NotificationDelivery.objects.order_by("pk")
    assert list(log.values_list("status", "attempts")) == [
        ("failed", webhooks.MAX_RETRIES + 1),
        ("retrying", 1),
    ]


@pytest.mark.django_db
def test_the_owners_email_retried_again_counts_an_attempt_of_each_it_carries(alice, settings):
    # Given alice's two e-mails that a try of her e-mail failed, the next try due
    held_emails(alice)
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", free_port()
    with pytest.raises(webhooks.RetryLater):
        webhooks.send_digest(alice.pk)
    NotificationDelivery.objects.update(next_attempt_at=timezone.now() - timedelta(seconds=1))
    destinations.answered(mail_server())  # (the server's own wait over)

    # When it is tried again and goes out
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    assert webhooks.send_digest(alice.pk) is None

    # Then each was delivered at its second attempt
    assert set(NotificationDelivery.objects.values_list("status", "attempts")) == {("delivered", 2)}
