"""A run's webhook carries its counts and its duration, as the run log shows them (regression,
notifications hunt).

`notify_on: ["succeeded"]` is "data landed", and the README says a run's webhook body carries
the run's counts. But alerts.run_summary, the body of every run's webhook, carried only
`rows_read` and `rows_failed`: a receiver told `run.succeeded` or `run.partial` could not tell
how many rows were inserted, updated, left unchanged or deleted, nor how long the run took,
which `GET /runs/{id}/` shows for the same run.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from schedules import services
from schedules.models import NotificationDelivery
from tasks import webhooks
from tests.api_support import API, client_for
from tests.factories import make_import
from tests.webhook_support import SOURCE, Hook, finished_run

pytestmark = pytest.mark.django_db

COUNTS = ("rows_read", "rows_inserted", "rows_updated", "rows_unchanged", "rows_deleted",
          "rows_failed", "duration_ms")  # fmt: skip


@pytest.mark.parametrize("status", ["succeeded", "partial"])
def test_a_runs_webhook_says_what_landed_as_the_run_log_does(alice, status):
    hook = Hook()
    try:
        # Given an import notifying its callback of each good run
        imp = make_import(alice, SOURCE, notify_on=[status], notify_channels=["webhook"],
                          callback_url=hook.url, mode="sync")  # fmt: skip
        counts = services.RunCounts(
            rows_read=12, rows_inserted=5, rows_updated=2, rows_unchanged=3, rows_deleted=4,
            rows_failed=2 if status == "partial" else 0,
        )  # fmt: skip
        started_at = timezone.now() - timedelta(seconds=3)
        run = finished_run(imp, status, started_at=started_at, counts=counts)

        # When its notification is posted
        (delivery,) = NotificationDelivery.objects.all()
        webhooks.deliver(delivery.pk)
    finally:
        hook.close()

    # Then the body's run says what the run log says of it
    logged = client_for(alice).get(f"{API}/runs/{run.pk}/").json()
    (body,) = hook.received
    assert body["event"] == f"run.{status}"
    posted = {name: body["run"].get(name) for name in COUNTS}
    assert posted == {name: logged[name] for name in COUNTS}
    assert posted["rows_deleted"] == 4 and posted["duration_ms"] >= 3000


def test_an_alert_sent_after_its_threshold_was_raised_says_the_threshold_it_met(alice):
    """Regression (notifications hunt): an alert queued at the 1st failure
    (`alert_after_failures` 1) and posted after the owner raised the threshold to 10 (a
    receiver down for a minute, an e-mail held for the digest) said
    `"consecutive_failures": 1, "alert_after_failures": 10`, contradicting itself: the
    threshold was read when the webhook went. It is the one the alert met now."""
    hook = Hook()
    try:
        imp = make_import(alice, SOURCE, callback_url=hook.url, alert_after_failures=1)
        finished_run(imp, "failed", error="boom")
        (delivery,) = NotificationDelivery.objects.filter(channel="webhook", event="alert")
        services.update_import(imp, alert_after_failures=10)

        webhooks.deliver(delivery.pk)
    finally:
        hook.close()

    (body,) = hook.received
    said = body["import"]
    assert said["consecutive_failures"] >= said["alert_after_failures"], said
    assert said["alert_after_failures"] == 1, said
