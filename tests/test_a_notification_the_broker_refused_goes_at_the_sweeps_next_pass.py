"""A notification whose message the broker refused is sent at the sweep's next pass.

A run ends while Redis is full: its webhook and alert e-mail are logged `pending` and their
messages refused. Before, the sweep sent a `pending` notification only once it was
STALE_QUEUED_SECONDS old (30 minutes by default), however often the sweep ran: an alert of a
failed run reached its owner up to 30 minutes after Redis had room again. A run whose message
was refused is marked for reconciliation's next pass (services.send_again_at_next_reconcile);
a notification now is too.
"""

from __future__ import annotations

from datetime import timedelta

import kombu.exceptions
import pytest
from django.conf import settings

from common import database_clock
from common.redis_client import client
from schedules import notifications
from tests.api_support import make_run
from tests.factories import make_import

pytestmark = pytest.mark.django_db


class Broker:
    """current_app's send_task: taking `room` messages, then refusing (full), each taken
    message noted."""

    def __init__(self, room: int = 0) -> None:
        self.room = room
        self.taken: list[int] = []

    def send_task(self, name, args=(), **kwargs):
        if len(self.taken) >= self.room:
            raise kombu.exceptions.OperationalError(
                "OOM command not allowed when used memory > 'maxmemory'."
            )
        self.taken.append(args[0])


def sweep() -> int:
    """The sweep's pass over notifications (tasks.maintenance), its stale age as configured."""
    stale = database_clock.now() - timedelta(seconds=settings.STALE_QUEUED_SECONDS)
    return notifications.resend_lost(stale)


def alert_sent_to(broker: Broker, owner, monkeypatch, capture_on_commit) -> list[int]:
    """A failed run's alert of `owner`'s (an e-mail and a webhook), its messages sent to
    `broker` once made; the notifications' ids."""
    client().delete(notifications.RESEND_CURSOR_KEY)  # a pass left midway by another test
    monkeypatch.setattr(notifications, "current_app", broker)
    imp = make_import(owner, "https://example.com/p.csv", callback_url="https://example.com/h")
    run = make_run(imp, "failed", error_message="boom")
    with capture_on_commit(execute=True):
        notifications.queue_alert(imp, run)
    return sorted(imp.deliveries.values_list("pk", flat=True))


def test_a_notification_the_full_broker_refused_is_sent_at_the_sweeps_next_pass(
    alice, monkeypatch, django_capture_on_commit_callbacks
):
    # Given a run's alert (an e-mail and a webhook) made while the broker refused its messages
    broker = Broker()
    made = alert_sent_to(broker, alice, monkeypatch, django_capture_on_commit_callbacks)
    assert len(made) == 2

    # When Redis has room again and the sweep makes its next pass (seconds later, not 30 min)
    broker.room = 1_000
    sent = sweep()

    # Then both go
    assert sorted(broker.taken) == made, f"sent {sent} of {made}"
    # ... once: the pass after that leaves them to their messages, on their way
    assert sweep() == 0
    assert sorted(broker.taken) == made
