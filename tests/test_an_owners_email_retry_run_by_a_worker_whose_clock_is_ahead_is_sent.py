"""The retry of an owner's e-mail that a worker whose clock is ahead runs early, by as much as
two workers' clocks may differ without a word, is the retry due and sends the e-mail.

Its countdown is timed by the clock of the worker whose try failed, and run by another's: each
may be database_clock.TOLERANCE_SECONDS off the database's without importbeat saying so, one
behind and one ahead. Before, a retry that came more than TOLERANCE_SECONDS early ended as a
copy (email_digest.send_due), and alice's alerts waited for the sweep's resend,
STALE_QUEUED_SECONDS (half an hour) after they were due (review2 hunt).
"""

from __future__ import annotations

import pytest
from django.core import mail

from common import database_clock
from schedules.models import NotificationDelivery
from tasks import webhooks
from tests.test_a_message_that_comes_before_a_notifications_next_attempt_sends_nothing import (
    owners_emails_retrying,
)

pytestmark = pytest.mark.django_db


def test_an_owners_email_retry_run_by_a_worker_whose_clock_is_ahead_is_sent(alice, settings):
    # Given alice's e-mail of two notifications that the mail server did not take, retried by
    # a worker whose clock is behind the database's by almost the tolerance, its next attempt
    # due in almost twice the tolerance by the database's clock
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.EMAIL_DIGEST_SECONDS = 60
    early = 2 * database_clock.TOLERANCE_SECONDS - 2
    deliveries = owners_emails_retrying(alice, due_in=early)

    # When its retry's message comes, run by a worker whose clock is as far ahead
    assert webhooks.send_digest(alice.pk, attempt=2, final=False) is None

    # Then the e-mail goes, both notifications in it
    assert len(mail.outbox) == 1
    statuses = NotificationDelivery.objects.filter(pk__in=[d.pk for d in deliveries])
    assert set(statuses.values_list("status", flat=True)) == {"delivered"}
