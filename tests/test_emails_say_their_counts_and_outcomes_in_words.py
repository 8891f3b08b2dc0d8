"""The e-mails say a count as words do and a run's outcome in words (regression, notifications
hunt).

The failure-streak alert with `alert_after_failures: 1` said "products failed 1 times in a row";
a run's e-mail said "run 4 succeeded: " (a dangling colon, and nothing of what landed) or
"run 2 timed_out" (the status's code). Now: "failed once", "failed 3 times in a row"; "Run 4
succeeded." with its rows, "Run 2 timed out: <why>".
"""

from __future__ import annotations

import re
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone

from schedules import alerts, notifications, services
from schedules.models import ImportRun, NotificationDelivery
from tests.factories import make_import
from tests.webhook_support import SOURCE, finished_run

pytestmark = pytest.mark.django_db

BERLIN = ZoneInfo("Europe/Berlin")


def test_an_alert_after_one_failure_says_once(alice):
    imp = make_import(alice, SOURCE, alert_after_failures=1)
    run = finished_run(imp, "timed_out", error="the import did not finish within 60 s")

    subject, message = alerts.alert_email(ImportRun.objects.get(pk=run.pk))

    assert subject == "[importbeat] products failed once"
    assert message.startswith(
        f"The import 'products' (id {imp.pk}) failed once.\n\nLast run {run.pk}: timed out\n"
    ), message
    assert "1 times" not in message


def test_an_alert_after_two_failures_says_2_times_in_a_row(alice):
    imp = make_import(alice, SOURCE, alert_after_failures=2)
    finished_run(imp, "failed", error="boom")
    run = finished_run(imp, "failed", error="boom")

    subject, _ = alerts.alert_email(ImportRun.objects.get(pk=run.pk))

    assert subject == "[importbeat] products failed 2 times in a row"


def email_of_run(owner, status: str, **kwargs) -> tuple[ImportRun, str]:
    imp = make_import(owner, SOURCE, notify_on=["succeeded", "failed", "partial"],
                      notify_channels=["email"], alert_after_failures=0)  # fmt: skip
    run = finished_run(imp, status, **kwargs)
    (delivery,) = NotificationDelivery.objects.select_related("scheduled_import__owner", "run")
    _, message = notifications.email_of(delivery)
    return run, message


def test_a_succeeded_runs_email_says_what_landed_without_a_dangling_colon(alice):
    counts = services.RunCounts(rows_read=3, rows_inserted=2, rows_updated=1)
    run, message = email_of_run(alice, "succeeded", counts=counts)

    assert message == (
        f"The import 'products' (id {run.scheduled_import_id}): succeeded.\n"
        f"Run {run.pk} succeeded.\n"
        "Rows: 3 read, 2 inserted, 1 updated, 0 unchanged, 0 deleted, 0 failed.\n"
    )


def test_a_timed_out_runs_email_says_it_in_words(alice):
    run, message = email_of_run(alice, "timed_out", error="the import did not finish in 60 s")

    assert message == (
        f"The import 'products' (id {run.scheduled_import_id}): failed.\n"
        f"Run {run.pk} timed out: the import did not finish in 60 s\n"
    )


def test_a_partial_runs_email_says_some_rows_failed(alice):
    counts = services.RunCounts(rows_read=3, rows_inserted=2, rows_failed=1)
    run, message = email_of_run(alice, "partial", counts=counts, error="1 row failed")

    assert f"Run {run.pk} partly succeeded (some rows failed): 1 row failed\n" in message
    assert "Rows: 3 read, 2 inserted, 0 updated, 0 unchanged, 0 deleted, 1 failed.\n" in message


def test_a_late_email_gives_times_in_the_imports_time_zone_without_microseconds(alice):
    # Regression (notifications hunt): "Next run: 2026-12-07T05:00:00+00:00" beside a schedule
    # "At 06:00 … (Europe/Berlin)", and "noticed at …16:52:31.623591+00:00"
    imp = make_import(alice, SOURCE, schedule_type="cron", cron_expression="0 6 * * 1-5",
                      timezone="Europe/Berlin")  # fmt: skip
    imp.refresh_from_db()
    imp.late_since = timezone.now()
    imp.missed_while_late, imp.missed_ticks = 2, 2

    _, message = alerts.late_email(imp)

    local_next = imp.next_run_at.astimezone(BERLIN).strftime("%H:%M")  # 06:00
    utc_next = imp.next_run_at.astimezone(ZoneInfo("UTC")).strftime("%H:%M")  # 05:00
    assert utc_next not in message and local_next in message.split("Next run:")[1], message
    assert not re.search(r"\d\d:\d\d:\d\d\.\d{6}", message), message


def test_with_no_digest_interval_each_email_goes_alone(alice, settings):
    """Regression (notifications hunt): README's `EMAIL_DIGEST_SECONDS` "0: each at once".
    With 0, the first e-mail's worker still folded every e-mail of the owner waiting at that
    moment into one digest, which said "it sends one e-mail every 0 seconds at most, listing
    what came in between"."""
    from django.core import mail

    from tasks import webhooks

    settings.EMAIL_DIGEST_SECONDS = 0
    alice.email = "alice@example.com"
    alice.save()
    for name in ("products", "prices"):
        imp = make_import(alice, SOURCE, name=name, dataset=name, notify_on=["failed"],
                          notify_channels=["email"], alert_after_failures=0)  # fmt: skip
        finished_run(imp, "failed", error="the server answered HTTP 503")

    for delivery in NotificationDelivery.objects.order_by("pk"):
        webhooks.deliver(delivery.pk)

    bodies = [message.body for message in mail.outbox]
    assert not [body for body in bodies if "every 0 seconds" in body], bodies
    assert len(mail.outbox) == 2, [message.subject for message in mail.outbox]
