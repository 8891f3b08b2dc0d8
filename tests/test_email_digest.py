"""An owner is e-mailed once per EMAIL_DIGEST_SECONDS at most: the notifications that come in
between wait (`held` in the delivery log) and go out together in one e-mail that lists them.

Before, an owner whose imports read one source got an e-mail per import when it went down, and
again at each failed tick: a thousand imports, a thousand e-mails an hour."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from project.devservices import free_port
from schedules import notifications, services
from schedules.models import NotificationDelivery, OwnerMailbox, ScheduledImport
from tasks import destinations, webhooks
from tasks.errors import TransientImportError
from tasks.mail_errors import mail_server
from tests.api_support import SOURCE, fail_run
from tests.conftest import wait_for
from tests.factories import make_import
from tests.saved_runs_support import CREDENTIAL, PAIR, RAW, legacy_run
from tests.smtp_support import smtp_server
from tests.webhook_support import when_due

# The digest's interval: the nineteen failures are seen held before it ends (at 6 s, a loaded
# machine's worker once held them after it ended, and they were out already).
WINDOW = 12


def emailing(owner, count: int, **fields) -> list[ScheduledImport]:
    return [
        make_import(owner, SOURCE, name=f"feed-{n}", dataset=f"feed-{n}", notify_on=["failed"],
                    notify_channels=["email"], **fields)
        for n in range(count)
    ]  # fmt: skip


def all_fail_then_the_first_is_delivered(imports: list[ScheduledImport]) -> None:
    """Each import fails before any e-mail went out (a worker's queue was behind); then the
    first notification's message is delivered (the task's body)."""
    for imp in imports:
        fail_run(imp)
    webhooks.deliver(NotificationDelivery.objects.order_by("pk").first().pk)


def said() -> set[tuple[str, str]]:
    """Each notification's (status, error)."""
    return set(NotificationDelivery.objects.values_list("status", "error"))


def listed(message) -> list[str]:
    return [line for line in message.splitlines() if line.startswith("- ")]


@pytest.mark.processes
@pytest.mark.django_db(transaction=True)
def test_a_worker_emails_an_owner_once_per_interval_however_many_imports_fail(alice, processes):
    # Given a worker on a real SMTP server, and twenty imports that e-mail alice their failures
    imports = emailing(alice, 20)
    with smtp_server() as (email_url, mailbox):
        processes.start("worker", EMAIL_URL=email_url, EMAIL_DIGEST_SECONDS=str(WINDOW))

        # When one fails, then she is told at once, in its own e-mail
        fail_run(imports[0])
        wait_for(mailbox.received, 60, what="the first e-mail\n" + processes.logs())
        first_at = time.monotonic()
        [alone] = mailbox.received()
        assert alone["Subject"] == "[importbeat] feed-0: failed"

        # When the nineteen others fail within the interval, then they wait for its end
        for imp in imports[1:]:
            fail_run(imp)
        held = NotificationDelivery.objects.filter(status="held")
        wait_for(lambda: held.count() == 19, WINDOW, what="19 held\n" + processes.logs())

        # and go out in one e-mail that lists each, once the interval is over
        wait_for(lambda: len(mailbox.received()) == 2, 60, what="the digest\n" + processes.logs())
        digest = mailbox.received()[1]
        assert time.monotonic() - first_at > WINDOW - 1
        assert digest["Subject"] == "[importbeat] 19 notifications about 19 import(s)"
        body = digest.get_payload(decode=True).decode()
        assert listed(body) == [
            f"- feed-{n}: failed (import {imp.pk}): run {imp.runs.get().pk} failed: the server "
            f"answered HTTP 503"
            for n, imp in enumerate(imports[1:], 1)
        ]
        time.sleep(1)
        assert len(mailbox.received()) == 2
    log = NotificationDelivery.objects.all()
    assert [(d.status, d.target) for d in log] == [("delivered", "alice@example.com")] * 20


@pytest.mark.django_db
def test_notifications_waiting_together_go_out_in_one_email(alice):
    # When the first notification is delivered, then the three are in its e-mail
    all_fail_then_the_first_is_delivered(emailing(alice, 3))

    assert [m.subject for m in mail.outbox] == ["[importbeat] 3 notifications about 3 import(s)"]
    assert [line.split(":")[0] for line in listed(mail.outbox[0].body)] == [
        "- feed-0",
        "- feed-1",
        "- feed-2",
    ]
    # and the other two messages find them sent
    for delivery in NotificationDelivery.objects.order_by("pk")[1:]:
        webhooks.deliver(delivery.pk)
    assert len(mail.outbox) == 1
    assert set(NotificationDelivery.objects.values_list("status", flat=True)) == {"delivered"}
    # each after one attempt: the two folded into the first one's e-mail said 0 (outcomes hunt)
    assert list(NotificationDelivery.objects.values_list("attempts", flat=True)) == [1, 1, 1]


@pytest.mark.django_db
def test_a_held_notification_is_sent_when_the_interval_is_over(alice, time_machine):
    # Given alice was e-mailed a minute ago
    [imp] = emailing(alice, 1)
    now = timezone.now()
    OwnerMailbox.objects.create(user=alice, last_sent_at=now - timedelta(seconds=60))
    time_machine.move_to(now, tick=False)
    fail_run(imp)
    delivery = NotificationDelivery.objects.get()

    # When its notification comes, then it waits for the interval's end
    webhooks.deliver(delivery.pk)
    delivery.refresh_from_db()
    assert (delivery.status, mail.outbox) == ("held", [])
    mailbox = OwnerMailbox.objects.get(user=alice)
    assert mailbox.digest_due_at == now + timedelta(seconds=240)

    # When its message comes again before then, it still waits; after, it goes
    webhooks.deliver(delivery.pk)
    assert not mail.outbox
    time_machine.move_to(now + timedelta(seconds=241), tick=False)
    webhooks.deliver(delivery.pk)
    delivery.refresh_from_db()
    assert delivery.status == "delivered"
    assert [m.subject for m in mail.outbox] == ["[importbeat] feed-0: failed"]
    mailbox.refresh_from_db()
    assert (mailbox.last_sent_at, mailbox.digest_due_at) == (
        now + timedelta(seconds=241),
        None,
    )


@pytest.mark.django_db
def test_held_notifications_whose_message_was_lost_are_sent_again_by_the_sweep(alice, settings):
    [imp] = emailing(alice, 1)
    fail_run(imp)
    old = timezone.now() - timedelta(seconds=settings.STALE_QUEUED_SECONDS + 1)
    NotificationDelivery.objects.update(status="held", created_at=old)

    assert notifications.resend_lost(timezone.now() - timedelta(seconds=1)) == 1


@pytest.mark.django_db
def test_a_digest_lists_a_hundred_and_counts_the_rest(alice):
    all_fail_then_the_first_is_delivered(emailing(alice, 130))

    [message] = mail.outbox
    assert message.subject == "[importbeat] 130 notifications about 130 import(s)"
    assert len(listed(message.body)) == 100
    assert "... and 30 more: each import's notifications are in its delivery log" in message.body


@pytest.mark.django_db
@pytest.mark.usefixtures("encryption_key")
def test_a_digest_hides_each_imports_credential(alice):
    # Given two imports with a credential, whose runs were saved holding it (before the hiding)
    imports = emailing(alice, 2, credential=CREDENTIAL)
    for imp in imports:
        legacy_run(imp)
        NotificationDelivery.objects.create(
            scheduled_import=imp, run=imp.runs.get(), event="failed", channel="email"
        )

    webhooks.deliver(NotificationDelivery.objects.order_by("pk").first().pk)

    [message] = mail.outbox
    assert len(listed(message.body)) == 2
    assert RAW not in message.body and PAIR not in message.body
    assert "[hidden]" in message.body


@pytest.mark.django_db
def test_an_owner_without_email_has_each_notification_skipped_and_told_why(alice):
    alice.email = ""
    alice.save()
    all_fail_then_the_first_is_delivered(emailing(alice, 2))

    assert not mail.outbox
    log = NotificationDelivery.objects.all()
    assert {(d.status, d.error) for d in log} == {
        ("skipped", "you have no e-mail address (set it with PATCH /api/v1/me)")
    }
    assert OwnerMailbox.objects.get(user=alice).last_sent_at is None


@pytest.mark.django_db
def test_an_interval_of_zero_sends_each_at_once(alice, settings):
    settings.EMAIL_DIGEST_SECONDS = 0
    [imp] = emailing(alice, 1, alert_after_failures=10)
    for _ in range(3):
        fail_run(imp)
        webhooks.deliver(NotificationDelivery.objects.order_by("pk").last().pk)

    assert [m.subject for m in mail.outbox] == ["[importbeat] feed-0: failed"] * 3


@pytest.mark.django_db
def test_an_email_written_to_the_console_in_production_is_a_failure_saying_so(alice, settings):
    # Given production without a mail server: Django's console backend, the default
    settings.DEBUG = False
    settings.EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
    [imp] = emailing(alice, 1)

    # When a notification's e-mail goes out, then the log does not call it delivered
    all_fail_then_the_first_is_delivered([imp])

    delivery = NotificationDelivery.objects.get()
    assert (delivery.status, delivery.error) == (
        "failed",
        "no mail server is configured (the operator sets EMAIL_URL): the e-mail was only "
        "written to the worker's log",
    )


@pytest.mark.django_db
def test_the_owners_digest_goes_out_though_the_notification_that_was_first_held_is_gone(
    alice, time_machine
):
    # Given alice was e-mailed a minute ago, and two imports' notifications were held since
    first, second = emailing(alice, 2)
    now = timezone.now()
    OwnerMailbox.objects.create(user=alice, last_sent_at=now - timedelta(seconds=60))
    time_machine.move_to(now, tick=False)
    for imp in (first, second):
        fail_run(imp)
        webhooks.deliver(NotificationDelivery.objects.filter(scheduled_import=imp).get().pk)
    assert set(NotificationDelivery.objects.values_list("status", flat=True)) == {"held"}

    # When the first import is deleted, and the owner's message comes at the interval's end
    services.delete_import(first)
    time_machine.move_to(now + timedelta(seconds=241), tick=False)
    webhooks.send_digest(alice.pk)

    # Then the other's e-mail goes out (it waited for the sweep, half an hour, before)
    assert [m.subject for m in mail.outbox] == ["[importbeat] feed-1: failed"]
    assert NotificationDelivery.objects.get().status == "delivered"


@pytest.mark.django_db
def test_a_digest_the_mail_server_cannot_take_is_retried_and_said_on_each(alice, settings):
    # Given two held notifications, and no mail server where EMAIL_URL points
    imports = emailing(alice, 2)
    OwnerMailbox.objects.create(user=alice, last_sent_at=timezone.now() - timedelta(hours=1))
    for imp in imports:
        fail_run(imp)
    NotificationDelivery.objects.update(status="held")
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", free_port()

    # When the owner's message comes with tries left, then each says why, and it retries
    with pytest.raises(TransientImportError):
        webhooks.send_digest(alice.pk, final=False)
    told = f"cannot reach the mail server 127.0.0.1:{settings.EMAIL_PORT} (Connection refused)"
    assert said() == {("retrying", told)}
    assert not NotificationDelivery.objects.filter(next_attempt_at__isnull=True).exists()

    # When the last try fails too, after the server's wait, then they failed for good
    destinations.answered(mail_server())
    for delivery in NotificationDelivery.objects.all():
        when_due(delivery.pk)  # (the retry comes when they are due)
    webhooks.send_digest(alice.pk, final=True)
    assert said() == {("failed", told)}
    assert not NotificationDelivery.objects.filter(next_attempt_at__isnull=False).exists()


def test_a_digest_that_goes_out_at_last_leaves_no_next_attempt(alice, mailoutbox):
    # Given two e-mails retrying after the owner's digest failed
    imports = emailing(alice, 2)
    OwnerMailbox.objects.create(user=alice, last_sent_at=timezone.now() - timedelta(hours=1))
    for imp in imports:
        fail_run(imp)
    NotificationDelivery.objects.update(
        status="retrying", next_attempt_at=timezone.now() - timedelta(seconds=5)
    )

    # When the digest goes out
    webhooks.send_digest(alice.pk, attempt=2, final=False)

    # Then both are delivered, with no next attempt left in their log
    assert len(mailoutbox) == 1
    assert set(NotificationDelivery.objects.values_list("status", "next_attempt_at")) == {
        ("delivered", None)
    }
