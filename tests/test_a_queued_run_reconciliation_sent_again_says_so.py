"""A queued run whose message reconciliation sends again (no worker took it, and the broker
holds no copy) says so on the run: why, and when, in the API's run detail and on the admin's
run page (sweep3 hunt). A retry sent again says so on its failed attempt (`retry_sent_again`);
a queued run has no attempt's entry, and its resend was said nowhere but in reconciliation's
log. The note is written by the statement that marks the run sent again: no run costs one more.

Real PostgreSQL and Redis (reconciliation reads the broker's queues); the message sent again
is left to the commit that a test's transaction never makes.
"""

import uuid
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape

from schedules import reconcile, services
from schedules.models import ImportRun
from tests.api_support import API, client_for
from tests.factories import make_import

pytestmark = pytest.mark.django_db

SAID = (
    "its message was sent again by reconciliation: no worker had taken it {late}s after it was "
    "queued, and {why}; should the first copy come back, only one of them runs it"
)


def queued_run(owner, **fields) -> ImportRun:
    """A manual run queued ten minutes ago whose message the broker does not hold."""
    imp = make_import(owner, "http://127.0.0.1/p.csv")
    return ImportRun.objects.create(
        scheduled_import=imp, trigger=ImportRun.Trigger.MANUAL, triggered_by=owner,
        queued_at=timezone.now() - timedelta(minutes=10), celery_task_id=str(uuid.uuid4()),
        **fields,
    )  # fmt: skip


def test_a_queued_run_sent_again_says_why_and_when(alice, admin_client, settings):
    # Given alice's queued run, ten minutes old, whose message no worker took nor the broker holds
    run = queued_run(alice)

    # When reconciliation passes
    now = timezone.now()
    resent, _missed = reconcile.recover_lost_messages(now, timedelta(seconds=60))

    # Then the run is sent again, and says so and why
    assert resent == 1
    run.refresh_from_db()
    late = int((now - run.queued_at).total_seconds())
    said = SAID.format(
        late=late,
        why="the broker held no copy of it (lost on its way, or with a broker restarted empty)",
    )
    assert run.error_details[services.RUN_SENT_AGAIN] == said
    assert run.error_details[services.RUN_SENT_AGAIN_AT] == now.isoformat()
    assert (run.status, run.heartbeat_at) == ("queued", now)
    # ... to its owner, in the API's run detail
    shown = client_for(alice).get(f"{API}/runs/{run.pk}/").json()
    assert shown["error_details"][services.RUN_SENT_AGAIN] == said
    # ... and on the admin's run page
    page = admin_client.get(reverse("admin:schedules_importrun_change", args=[run.pk]))
    assert escape(said) in page.content.decode()


def test_a_queued_run_whose_message_the_broker_refused_says_it_was_sent_again(alice):
    # Given a queued run whose first message the broker refused, and said so
    run = queued_run(alice)
    services.send_again_at_next_reconcile([run.pk], "the broker is full")
    run.refresh_from_db()
    assert services.message_not_sent(run)

    # When reconciliation sends it again
    reconcile.recover_lost_messages(timezone.now(), timedelta(seconds=60))

    # Then its refusal's flag is gone, and it says it was sent again after that refusal
    run.refresh_from_db()
    assert services.MESSAGE_NOT_SENT not in run.error_details
    assert run.error_message == ""
    assert "and the broker had refused it;" in run.error_details[services.RUN_SENT_AGAIN]
