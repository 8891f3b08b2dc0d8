"""A notification whose message a full broker refused is said in one line, in words.

The notifications of a finished run (or of an import gone late) are made in the transaction
that says so, and their messages sent once it commits. When the broker refuses them (a Redis at
its maxmemory, evicting nothing), the rows stay and the sweep sends them. Before, Django's
robust on_commit logged each refusal at ERROR with the whole chained traceback of kombu and
redis-py (about 195 lines); beat, whose own message for a late import was refused, made the
notifications itself and asked the same refusing broker again: two tracebacks per late import,
where everything else beat says of a full Redis is one line.
"""

from __future__ import annotations

import logging
from datetime import timedelta

import kombu.exceptions
import pytest
import redis.exceptions

from schedules import dispatch, notifications
from schedules.models import NotificationDelivery
from tests.api_support import make_run
from tests.factories import make_import

pytestmark = pytest.mark.django_db

FULL = "Redis is full: it reached its maxmemory and evicts nothing"


class FullBroker:
    """current_app's send_task, as a full Redis answers it through kombu."""

    def __init__(self) -> None:
        self.asked = 0

    def send_task(self, *args, **kwargs):
        self.asked += 1
        try:
            raise redis.exceptions.OutOfMemoryError(
                "Command # 1 (LLEN celery) of pipeline caused error: command not allowed when "
                "used memory > 'maxmemory'."
            )
        except redis.exceptions.OutOfMemoryError as error:
            raise kombu.exceptions.OperationalError(str(error)) from error


@pytest.fixture
def full_broker(monkeypatch) -> FullBroker:
    broker = FullBroker()
    monkeypatch.setattr(notifications, "current_app", broker)
    monkeypatch.setattr("celery.current_app", broker)
    return broker


def said(caplog) -> tuple[list[str], list[logging.LogRecord]]:
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    # A traceback, or Django's robust on_commit's ERROR ("import late" is beat's own ERROR)
    loud = [r for r in caplog.records if r.exc_info or "Error calling" in r.getMessage()]
    return warnings, loud


def test_a_finished_runs_notifications_the_full_broker_refused_are_one_warning_in_words(
    alice, full_broker, caplog, django_capture_on_commit_callbacks
):
    # Given an import with a webhook, and a broker that refuses every message (full)
    imp = make_import(alice, "https://example.com/p.csv", callback_url="https://example.com/h")
    run = make_run(imp, "failed", error_message="boom")
    caplog.set_level(logging.INFO)

    # When its run's alert is made and its transaction commits
    with django_capture_on_commit_callbacks(execute=True):
        notifications.queue_alert(imp, run)

    # Then one WARNING says what was not sent, why in words, and what follows; no traceback
    warnings, loud = said(caplog)
    assert not loud, [r.getMessage() for r in loud]
    refused = [w for w in warnings if "not sent" in w]
    assert len(refused) == 1, warnings
    assert FULL in refused[0] and "the sweep sends them" in refused[0], refused
    assert "LLEN" not in refused[0] and "OperationalError" not in refused[0], refused
    # ... and the notifications wait, logged
    assert set(NotificationDelivery.objects.values_list("status", flat=True)) == {"pending"}


def test_beat_asks_a_full_broker_once_for_a_late_import_and_says_it_in_one_line(
    alice, full_broker, caplog, django_capture_on_commit_callbacks
):
    # Given an import gone late, and a broker that refuses every message (full)
    imp = make_import(alice, "https://example.com/p.csv")
    caplog.set_level(logging.INFO)

    # When beat hands its late notification to a worker, and the broker refuses that message
    with django_capture_on_commit_callbacks(execute=True):
        dispatch._tell_owners_late([imp.pk])

    # Then beat makes the notification itself without asking the refusing broker again
    assert full_broker.asked == 1
    assert NotificationDelivery.objects.filter(scheduled_import=imp, event="late").exists()
    # ... and says so in one line, in words, with no traceback
    warnings, loud = said(caplog)
    assert not loud, [r.getMessage() for r in loud]
    late = [w for w in warnings if "late notifications" in w]
    assert len(late) == 1 and FULL in late[0], warnings


def test_reconciliation_says_a_lost_run_message_the_full_broker_refused_in_one_line(
    alice, monkeypatch, caplog, django_capture_on_commit_callbacks
):
    """Reconciliation sends a lost run's message again after its commit; send_runs says a
    refusal in one line and raises BrokerUnavailable, which Django's robust on_commit logged
    again at ERROR with the whole chained traceback."""
    from django.utils import timezone

    from schedules import reconcile, services

    def refused(runs, **kwargs):
        # What services.send_runs does when the full broker refuses: one line, then raise.
        logging.getLogger("importbeat.services").warning("run messages not sent: Redis is full")
        try:
            FullBroker().send_task()
        except kombu.exceptions.OperationalError as error:
            raise services.BrokerUnavailable("the task queue is full", full=True) from error

    monkeypatch.setattr(services, "send_runs", refused)
    # Given a manual run whose message is lost (not in the broker), long untouched
    imp = make_import(alice, "https://example.com/p.csv")
    long_ago = timezone.now() - timedelta(hours=2)
    make_run(imp, "queued", trigger="manual", queued_at=long_ago, heartbeat_at=long_ago)
    caplog.set_level(logging.INFO)

    # When reconciliation sends it again, and the full broker refuses
    with django_capture_on_commit_callbacks(execute=True):
        reconcile.recover_lost_messages(timezone.now(), timedelta(seconds=60))

    # Then the refusal is said once, with no traceback
    warnings, loud = said(caplog)
    assert not loud, [r.getMessage() for r in loud]
    assert "run messages not sent: Redis is full" in warnings, warnings
