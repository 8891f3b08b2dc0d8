"""Partial is not success: an import that rejects rows on every run is counted apart in the
import's counters, its success rate, the stats, the admin and the dashboard, and is listed as
needing attention with the reason. (Issue 16: it showed a 100 % success rate.)"""

import pytest
from django.utils import timezone

from schedules import attention, services
from schedules.models import ImportRun
from tests.api_support import API, SOURCE, client_for
from tests.factories import make_import

pytestmark = pytest.mark.django_db


def finish(imp, status: str, rows_failed: int = 0) -> ImportRun:
    run = ImportRun.objects.create(
        scheduled_import=imp, trigger="schedule", status="running", started_at=timezone.now()
    )
    counts = services.RunCounts(rows_read=10, rows_inserted=10 - rows_failed)
    counts.rows_failed = rows_failed
    if status in ("failed", "timed_out"):
        return services.finish_run(run, status, error="the server answered HTTP 404 Not Found")
    return services.finish_run(run, status, counts=counts)


def test_an_import_whose_runs_are_all_partial_has_no_success(alice):
    # Given an import that rejects 6 rows on each of its three runs
    imp = make_import(alice, SOURCE)
    for _ in range(3):
        finish(imp, "partial", rows_failed=6)

    # Then its counters say partial, not succeeded, and its success rate is 0
    imp.refresh_from_db()
    assert (imp.total_runs, imp.successful_runs, imp.partial_runs, imp.failed_runs) == (3, 0, 3, 0)
    assert imp.success_rate == 0.0
    assert imp.consecutive_failures == 0  # nor is it a failure streak

    # And the stats API says so, with the rate including partial runs named as such
    body = client_for(alice).get(f"{API}/imports/{imp.pk}/stats/").json()
    assert body["by_status"]["partial"] == 3 and body["by_status"]["succeeded"] == 0
    assert body["success_rate"] == 0.0 and body["success_or_partial_rate"] == 1.0
    detail = client_for(alice).get(f"{API}/imports/{imp.pk}/").json()
    assert (detail["successful_runs"], detail["partial_runs"]) == (0, 3)
    assert detail["success_rate"] == 0.0


def test_succeeded_partial_and_failed_runs_are_counted_apart(alice):
    imp = make_import(alice, SOURCE, alert_after_failures=0)

    for status in ("succeeded", "succeeded", "partial", "failed"):
        finish(imp, status, rows_failed=2 if status == "partial" else 0)

    imp.refresh_from_db()
    assert (imp.successful_runs, imp.partial_runs, imp.failed_runs) == (2, 1, 1)
    assert imp.success_rate == 0.5
    assert (imp.last_run_status, imp.consecutive_failures) == ("failed", 1)


def test_an_import_whose_latest_run_is_partial_or_failed_needs_attention_with_its_reason(alice):
    # Given one import fine, one whose last run was partial, one failing twice in a row
    fine = make_import(alice, SOURCE, name="fine", dataset="fine")
    finish(fine, "partial", rows_failed=1)
    finish(fine, "succeeded")
    partial = make_import(alice, SOURCE, name="partial", dataset="partial")
    finish(partial, "partial", rows_failed=6)
    failing = make_import(alice, SOURCE, name="failing", dataset="failing")
    finish(failing, "failed")
    finish(failing, "timed_out")

    # When the list of imports needing attention is made (dashboard and admin)
    listed = attention.needing_attention()

    # Then the two troubled ones are there, failing first, each with its reason
    assert [(i["name"], i["reason"]) for i in listed] == [
        ("failing", "last run timed out (2 failures in a row)"),
        ("partial", "last run partial: some rows were rejected"),
    ]
    assert listed[1]["reasons"][0]["code"] == "partial"


def test_the_admin_shows_the_success_rate_of_succeeded_runs_and_the_reason(admin_client, alice):
    imp = make_import(alice, SOURCE)
    finish(imp, "succeeded")
    finish(imp, "partial", rows_failed=6)

    html = admin_client.get("/admin/schedules/scheduledimport/").content.decode()

    assert "50% (1 succeeded, 1 partial, 0 failed)" in html
    assert "last run partial: some rows were rejected" in html


def test_the_dashboard_lists_a_partial_import_as_needing_attention(admin_client, alice):
    imp = make_import(alice, SOURCE, name="rejects rows")
    finish(imp, "partial", rows_failed=6)

    html = admin_client.get("/dashboard/").content.decode()
    live = admin_client.get("/dashboard/live.json").json()

    assert "Imports needing attention" in html and "rejects rows" in html
    assert "last run partial: some rows were rejected" in html
    assert [i["id"] for i in live["attention"]] == [imp.pk]


def test_a_run_whose_every_row_was_refused_failed_and_keeps_the_streak(alice, csv_server):
    # A partner's new date format: every row refused, nothing landed. The run was `partial`,
    # which ended the failure streak: such a feed never alerted
    from schedules.models import ScheduledImport
    from tests.importer_support import run_now

    bad = "sku,day\n" + "".join(f"K{n},not a date\n" for n in range(50))
    imp = make_import(
        alice, csv_server.serve("/p.csv", bad), columns=[{"name": "day", "type": "date"}]
    )
    ScheduledImport.objects.filter(pk=imp.pk).update(consecutive_failures=2)

    run = run_now(imp)

    assert (run.status, run.rows_read, run.rows_failed) == ("failed", 50, 50)
    assert run.error_message == (
        "every row of the file was refused (50 bad rows; the row errors say why): nothing landed"
    )
    assert len(run.error_details["rows"]) == 50
    imp.refresh_from_db()
    assert imp.consecutive_failures == 3


def test_a_cancelled_import_needs_no_attention_on_any_surface(admin_client, alice):
    # The admin's column flagged it, while the dashboard and ?needs_attention= left it out
    imp = make_import(alice, SOURCE, name="stopped", dataset="stopped")
    finish(imp, "failed")
    services.cancel_import(imp)

    html = admin_client.get("/admin/schedules/scheduledimport/").content.decode()

    assert attention.reasons_for(imp) == []
    assert [i["name"] for i in attention.needing_attention()] == []
    assert "last run failed" not in html


@pytest.mark.parametrize(
    "broken",
    ["sku,name\n,Anvil\n,Bucket\n,Crate\n", "sku,name\nA-1\nB-2\nC-3\n"],
    ids=["keys lost", "a column lost"],
)
def test_a_sync_run_whose_every_row_was_refused_deletes_no_record(alice, csv_server, broken):
    # Given a sync import that loaded three products
    from tests.importer_support import records, run_now

    url = csv_server.serve("/p.csv", "sku,name\nA-1,Anvil\nB-2,Bucket\nC-3,Crate\n")
    imp = make_import(alice, url, mode="sync")
    assert run_now(imp).status == "succeeded"

    # When the partner's next file is broken on every row
    csv_server.serve("/p.csv", broken)
    run = run_now(imp)

    # Then the run failed, saying nothing landed, and it deleted nothing: its keys are what
    # broke, so nothing says which records are absent (it deleted all three)
    assert (run.status, run.rows_deleted) == ("failed", 0), run.error_message
    assert "nothing landed" in run.error_message
    assert sorted(records(imp)) == ["A-1", "B-2", "C-3"]
