"""A notification the broker took before it filled up is not sent again (review).

A run's alert makes two deliveries; the broker took the first message and refused the second
(a Redis reaching its maxmemory midway). Every delivery of the batch was marked for the sweep's
next pass, the one whose message was on its way too: the sweep sent it again a minute later
while its first message waited in the queue, and the webhook was POSTed twice. And an e-mail
marked so, then held for its owner's digest, still showed the mark (`next_attempt_at`, which
the log shows only while a notification retries).
"""

from __future__ import annotations

import pytest

from common import database_clock
from schedules import email_digest, notifications
from schedules.models import NotificationDelivery, OwnerMailbox
from tests.api_support import make_run
from tests.factories import make_import
from tests.test_a_notification_the_broker_refused_goes_at_the_sweeps_next_pass import (
    Broker,
    alert_sent_to,
    sweep,
)

pytestmark = pytest.mark.django_db


def test_a_notification_the_broker_took_is_not_sent_again_at_the_next_pass(
    alice, monkeypatch, django_capture_on_commit_callbacks
):
    # Given an alert whose first message the broker took and whose second it refused
    broker = Broker(room=1)
    made = alert_sent_to(broker, alice, monkeypatch, django_capture_on_commit_callbacks)
    assert len(made) == 2 and len(broker.taken) == 1
    took = broker.taken[0]

    # Then the one taken is not marked for the sweep's next pass (its message is on its way)
    marked = NotificationDelivery.objects.get(pk=took).next_attempt_at
    # When Redis has room again and the sweep passes (seconds later)
    broker.room = 10
    sweep()
    assert marked is None, "the delivery the broker took was marked for the next pass"
    assert broker.taken.count(took) == 1, f"delivery {took} sent twice: {broker.taken}"


def test_a_held_email_says_no_next_attempt(
    alice, monkeypatch, settings, django_capture_on_commit_callbacks
):
    """A refused e-mail (marked), then held for the owner's digest: the log says
    `next_attempt_at` only while `retrying` (README), not on a held one."""
    settings.EMAIL_DIGEST_SECONDS = 300
    broker = Broker(room=0)
    monkeypatch.setattr(notifications, "current_app", broker)
    monkeypatch.setattr(email_digest, "current_app", Broker(room=10))
    imp = make_import(alice, "https://example.com/p.csv")
    run = make_run(imp, "failed", error_message="boom")
    OwnerMailbox.objects.update_or_create(
        user=alice, defaults={"last_sent_at": database_clock.now()}
    )
    with django_capture_on_commit_callbacks(execute=True):
        notifications.queue_alert(imp, run, ("email",))
    delivery = imp.deliveries.get()
    assert delivery.next_attempt_at is not None  # marked for the sweep's next pass

    # Its message (the sweep's) reaches a worker, which holds it for the digest
    with django_capture_on_commit_callbacks(execute=True):
        email_digest.send(notifications.start(delivery.pk))
    delivery.refresh_from_db()
    assert delivery.status == "held"
    assert delivery.next_attempt_at is None, "a held e-mail shows the sweep's mark"
