"""The e-mails say a count as words do and a run's outcome in words (regression, notifications
hunt).

The failure-streak alert with `alert_after_failures: 1` said "products failed 1 times in a row";
a run's e-mail said "run 4 succeeded: " (a dangling colon, and nothing of what landed) or
"run 2 timed_out" (the status's code). Now: "failed once", "failed 3 times in a row"; "Run 4
succeeded." with its rows, "Run 2 timed out: <why>".
"""

from __future__ import annotations

import pytest

from schedules import alerts, notifications, services
from schedules.models import ImportRun, NotificationDelivery
from tests.factories import make_import
from tests.webhook_support import SOURCE, finished_run

pytestmark = pytest.mark.django_db


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
