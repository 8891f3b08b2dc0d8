"""A held e-mail is not taken for lost before its digest is due (regression, notifications hunt).

With `EMAIL_DIGEST_SECONDS=3600` (one e-mail an hour per owner) and the default
`STALE_QUEUED_SECONDS` (1800), notifications.resend_lost counted a `held` e-mail as lost once it
was created more than STALE_QUEUED_SECONDS ago, whatever its digest's time: from minute 30 to 60
each sweep sent every held e-mail again (500 a pass), logged `WARNING sweep ... notifications=N`
as if messages were lost, and each copy re-held it with an attempt more. Now a held one is lost
only past STALE_QUEUED_SECONDS plus EMAIL_DIGEST_SECONDS, as health judges it.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from celery import current_app
from django.utils import timezone

from schedules import notifications
from schedules.models import NotificationDelivery, OwnerMailbox
from tests.factories import make_import
from tests.webhook_support import SOURCE, failed_run_notified, finished_run

pytestmark = pytest.mark.django_db

HOOK = "https://hooks.example.com/in"


def test_an_email_held_for_an_hourly_digest_is_not_sent_again_by_the_sweep(
    alice, settings, monkeypatch
):
    settings.EMAIL_DIGEST_SECONDS = 3600
    settings.STALE_QUEUED_SECONDS = 1800
    alice.email = "alice@example.com"
    alice.save()
    sent: list[tuple] = []
    monkeypatch.setattr(current_app, "send_task", lambda name, **kw: sent.append((name, kw)))

    # Given alice e-mailed 40 minutes ago, and a failure 35 minutes ago held for her next
    # digest, due in 20 minutes (its message on its way)
    now = timezone.now()
    imp = make_import(alice, SOURCE, notify_on=["failed"], notify_channels=["email"],
                      alert_after_failures=0)  # fmt: skip
    finished_run(imp, "failed", error="boom")
    NotificationDelivery.objects.update(
        status="held", attempts=0, created_at=now - timedelta(minutes=35)
    )
    OwnerMailbox.objects.create(
        user=alice, last_sent_at=now - timedelta(minutes=40),
        digest_due_at=now + timedelta(minutes=20),
    )  # fmt: skip
    sent.clear()

    # When the sweep looks for lost notifications
    resent = notifications.resend_lost(now - timedelta(seconds=settings.STALE_QUEUED_SECONDS))

    # Then it leaves the held e-mail to its digest
    assert (resent, sent) == (0, []), "a held e-mail, not lost, was sent again by the sweep"

    # But once it is older than the sweep's patience and a whole digest interval, its message
    # is lost: the sweep sends it again
    NotificationDelivery.objects.update(created_at=now - timedelta(minutes=91))
    resent = notifications.resend_lost(now - timedelta(seconds=settings.STALE_QUEUED_SECONDS))
    assert (resent, [name for name, _ in sent]) == (1, [notifications.DELIVER])


def test_a_pending_notification_is_lost_past_the_sweeps_patience_alone(
    alice, settings, monkeypatch
):
    settings.EMAIL_DIGEST_SECONDS = 3600
    settings.STALE_QUEUED_SECONDS = 1800
    sent: list[str] = []
    monkeypatch.setattr(current_app, "send_task", lambda name, **kw: sent.append(name))
    failed_run_notified(alice, HOOK)
    now = timezone.now()
    NotificationDelivery.objects.update(status="pending", created_at=now - timedelta(minutes=31))
    sent.clear()

    assert notifications.resend_lost(now - timedelta(seconds=1800)) == 1
