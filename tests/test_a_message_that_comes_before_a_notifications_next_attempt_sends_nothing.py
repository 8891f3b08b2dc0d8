"""A message that comes before a notification's next attempt sends nothing (notify hunt).

A database restored from a backup brings back a notification `retrying`, its next attempt a
few seconds away, while Redis still holds older messages of it (its first, a retry from the
hour the restore took back). Each message that came was one attempt more, at once: against a
receiver answering 503, four POSTs came within 55 ms and the notification spent its
MAX_RETRIES attempts in under a second. So did any copy of a `retrying` notification's message
(a redelivery, Redis reloaded from a snapshot, the sweep's resend racing the real retry), and
an e-mail's the same. Such a message now posts nothing and counts no attempt: it asks again
when the attempt is due (notifications.start), so the POSTs keep their backoff. A retry whose
message the broker lost is long due, and the sweep's resend still sends it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from celery import current_app
from django.core import mail
from django.db import connection, transaction

from common import database_clock
from project.devservices import free_port
from schedules import email_digest, notifications
from schedules.models import NotificationDelivery, OwnerMailbox
from tasks import webhooks
from tests.api_support import SOURCE, fail_run
from tests.backup_support import backup, restore_in_this_transaction
from tests.conftest import wait_for
from tests.factories import make_import
from tests.webhook_support import Hook

NOT_DUE = "waits: its next attempt is due in"
COPIES = 4
# How early a retry may come and be the attempt due (its countdown timed by another worker's
# clock): notifications.DUE_TOLERANCE_SECONDS.
EARLY = timedelta(seconds=1)


def notification_to(
    owner, channel: str, callback_url: str = "", name: str = "products"
) -> NotificationDelivery:
    imp = make_import(owner, SOURCE, name=name, dataset=name, notify_on=["failed"],
                      notify_channels=[channel], callback_url=callback_url,
                      alert_after_failures=0)  # fmt: skip
    fail_run(imp)
    return NotificationDelivery.objects.get(scheduled_import=imp)


def retrying(delivery: NotificationDelivery, due_in: float) -> None:
    """As its first attempt left it: failed, its next attempt `due_in` seconds away."""
    NotificationDelivery.objects.filter(pk=delivery.pk).update(
        status="retrying", attempts=1, error="the callback answered HTTP 503",
        next_attempt_at=database_clock.now() + timedelta(seconds=due_in),
    )  # fmt: skip


class Posts(Hook):
    """A receiver answering 503 that notes, at each POST, the database's time and the
    notification's next attempt as its log then says (the one this POST may be)."""

    def __init__(self) -> None:
        self.seen: list[tuple[datetime, datetime | None]] = []
        self.delivery_id = 0
        super().__init__(status=503, on_post=lambda n: self.note())

    def note(self) -> None:
        try:
            with connection.cursor() as cursor:
                cursor.execute(
                    f"SELECT clock_timestamp(), next_attempt_at FROM "
                    f"{NotificationDelivery._meta.db_table} WHERE id = %s",
                    [self.delivery_id],
                )
                self.seen.append(cursor.fetchone())
        finally:
            connection.close()  # (this thread's own connection)


@contextmanager
def alices_webhook_retrying(
    settings, alice, due_in: float
) -> Iterator[tuple[NotificationDelivery, Hook]]:
    """alice's webhook to a receiver answering 200, as its first attempt left it (`retrying`),
    its next attempt `due_in` seconds away; the receiver closed after."""
    settings.ALLOWED_PRIVATE_HOSTS = ["127.0.0.1:*"]
    hook = Hook()
    try:
        delivery = notification_to(alice, "webhook", hook.url)
        retrying(delivery, due_in=due_in)
        yield delivery, hook
    finally:
        hook.close()


def posted_once_as_its_second_attempt(delivery: NotificationDelivery, hook: Hook) -> None:
    assert len(hook.requests) == 1
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("delivered", 2)


@pytest.mark.processes
@pytest.mark.django_db(transaction=True)
def test_stale_messages_of_a_restored_retrying_webhook_keep_its_backoff(
    alice, processes, settings, tmp_path: Path
):
    # Given alice's webhook to a receiver answering 503, its first attempt failed, its next
    # due in a few seconds, as a backup taken then keeps it
    settings.ALLOWED_PRIVATE_HOSTS = ["127.0.0.1:*"]
    receiver = Posts()
    try:
        delivery = notification_to(alice, "webhook", receiver.url)
        receiver.delivery_id = delivery.pk
        retrying(delivery, due_in=8)
        taken = backup(tmp_path / "backup.sql")
        # ... the hour after it, lost with the restore: attempts of it, and its messages still
        # in Redis, each with its retries as Celery counted them
        NotificationDelivery.objects.filter(pk=delivery.pk).update(attempts=COPIES)
        for retries in range(1, COPIES + 1):
            current_app.send_task(
                notifications.DELIVER, args=[delivery.pk], retries=retries,
                task_id=notifications.task_id(delivery.pk),
            )  # fmt: skip

        # When the database is restored from the backup and the workers take the messages
        with transaction.atomic():
            restore_in_this_transaction(taken)
        worker = processes.start("worker", WORKER_CONCURRENCY="4")
        # Two more attempts, each posted and logged: the stop signals the pool processes too,
        # and one stopped between its attempt's count and its POST, or waiting on the
        # receiver, left a count with no POST and a WorkerLostError's traceback (4 runs in 6,
        # review2), so its log is read first too.
        wait_for(
            lambda: len(receiver.seen) >= 2 and NotificationDelivery.objects.filter(
                pk=delivery.pk, attempts__gte=3, sending_since=None).exists(), 120,
            what="two more attempts\n" + processes.logs(),
        )  # fmt: skip
        log = processes.log_of("worker")
        processes.stop(worker)
    finally:
        receiver.close()

    # Then the stale messages posted nothing before the restored attempt was due: each POST
    # came when the attempt before it had said the next was due, one POST an attempt
    delivery.refresh_from_db()
    assert delivery.status == "retrying", delivery.error
    for posted_at, due_at in receiver.seen:
        assert due_at is not None and posted_at >= due_at - EARLY, receiver.seen
    assert len(receiver.seen) == delivery.attempts - 1  # (the first was before the backup)
    # ... and the stale messages said why they waited
    assert log.count(f"notification {delivery.pk} {NOT_DUE}") >= COPIES, log
    assert "Traceback" not in log


@pytest.mark.django_db
def test_a_copy_before_a_webhooks_next_attempt_posts_nothing_and_asks_again_then(alice, settings):
    # Given alice's webhook waiting 30 seconds for its second attempt
    settings.ALLOWED_PRIVATE_HOSTS = ["127.0.0.1:*"]
    hook = Hook()
    try:
        delivery = notification_to(alice, "webhook", hook.url)
        retrying(delivery, due_in=30)

        # When a copy of its message comes now
        with pytest.raises(webhooks.RetryLater) as later:
            webhooks.deliver(delivery.pk)
    finally:
        hook.close()

    # Then it posts nothing, counts no attempt, and asks again when the attempt is due
    assert hook.requests == []
    assert isinstance(later.value.error, webhooks.NotificationWaits)
    assert str(later.value).startswith(f"notification {delivery.pk} {NOT_DUE} ")
    assert 25 < later.value.countdown <= 30
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.sending_since) == ("retrying", 1, None)


@pytest.mark.django_db
def test_a_copy_before_an_emails_next_attempt_sends_nothing(bob, settings):
    # Given bob's e-mail, its mail server away at its first attempt, its second 30 s away
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.EMAIL_DIGEST_SECONDS = 0
    delivery = notification_to(bob, "email")
    retrying(delivery, due_in=30)

    # When a copy of its message comes now
    with pytest.raises(webhooks.RetryLater) as later:
        webhooks.deliver(delivery.pk)

    # Then no e-mail goes, and no attempt is counted
    assert mail.outbox == []
    assert str(later.value).startswith(f"notification {delivery.pk} {NOT_DUE} ")
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("retrying", 1)


@pytest.mark.django_db
def test_the_retry_that_comes_when_its_attempt_is_due_is_sent(alice, settings):
    # Given alice's webhook whose second attempt is due a moment from now (its retry's
    # countdown, timed by another worker's clock, ends a little early)
    due_in = EARLY.total_seconds() / 2
    with alices_webhook_retrying(settings, alice, due_in=due_in) as (delivery, hook):
        # When its retry comes
        assert webhooks.deliver(delivery.pk) is None

    # Then it is sent, as its second attempt
    posted_once_as_its_second_attempt(delivery, hook)


@pytest.mark.django_db
def test_a_retry_the_broker_lost_is_sent_again_by_the_sweep_and_posted(
    alice, settings, monkeypatch
):
    # Given alice's webhook whose retry was due long ago, its message lost
    sent: list[int] = []

    class Broker:
        def send_task(self, name: str, args: list[int], **options) -> None:
            sent.extend(args)

    monkeypatch.setattr(notifications, "current_app", Broker())
    long_ago = settings.STALE_QUEUED_SECONDS + 60
    with alices_webhook_retrying(settings, alice, due_in=-long_ago) as (delivery, hook):
        # When the sweep sends it again, and its message comes
        notifications.resend_lost(database_clock.now() - timedelta(seconds=long_ago - 30))
        assert sent == [delivery.pk]
        assert webhooks.deliver(delivery.pk) is None

    # Then it is posted, as its second attempt
    posted_once_as_its_second_attempt(delivery, hook)


def owners_emails_retrying(owner, due_in: float) -> list[NotificationDelivery]:
    """Two of the owner's e-mails, as an e-mail of both that the mail server did not take left
    them (email_digest.failed): `retrying`, their next attempt `due_in` seconds away."""
    OwnerMailbox.objects.create(user=owner)
    deliveries = [notification_to(owner, "email", name=f"feed-{n}") for n in range(2)]
    NotificationDelivery.objects.filter(pk__in=[d.pk for d in deliveries]).update(
        status="retrying", error="cannot reach the mail server",
        next_attempt_at=database_clock.now() + timedelta(seconds=due_in),
    )  # fmt: skip
    return deliveries


@pytest.mark.django_db
def test_a_copy_of_an_owners_email_retry_before_it_is_due_sends_nothing(alice, settings):
    # Given alice's e-mail of two notifications that the mail server did not take, its retry
    # 30 s away
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.EMAIL_DIGEST_SECONDS = 60
    deliveries = owners_emails_retrying(alice, due_in=30)

    # When a copy of its retry's message comes now
    assert webhooks.send_digest(alice.pk, attempt=2, final=False) is None

    # Then no e-mail goes, and both wait for the retry due
    assert mail.outbox == []
    statuses = NotificationDelivery.objects.filter(pk__in=[d.pk for d in deliveries])
    assert set(statuses.values_list("status", flat=True)) == {"retrying"}


@pytest.mark.django_db
def test_a_copy_that_waited_for_a_failing_try_of_an_owners_email_sends_nothing(alice, settings):
    # Given alice's e-mail of two notifications, its retry due, and a worker trying it while
    # the mail server is away
    settings.EMAIL_DIGEST_SECONDS = 60
    deliveries = owners_emails_retrying(alice, due_in=-1)
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", free_port()
    with pytest.raises(OSError):
        email_digest.send_due(alice.pk)

    # When a copy of the message that waited for her mailbox takes it then, before that
    # failure is logged (the mail server back)
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    email_digest.send_due(alice.pk)

    # Then it sends nothing; the try under way says how it went, and they wait for its retry
    assert mail.outbox == []
    email_digest.failed(alice.pk, "cannot reach the mail server", retry_in=20)
    for delivery in deliveries:
        delivery.refresh_from_db()
        assert (delivery.status, delivery.sending_since) == ("retrying", None)


def test_the_tolerance_of_a_retry_that_comes_early_is_the_one_said():
    assert EARLY.total_seconds() == notifications.DUE_TOLERANCE_SECONDS
