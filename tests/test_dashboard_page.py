"""The staff dashboard: runs per day as a chart, runs in progress, imports needing attention."""

from datetime import timedelta

import pytest
from django.utils import timezone

from schedules.models import ScheduledImport
from tests.api_support import SOURCE, make_run
from tests.factories import make_import

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(django_user_model):
    return django_user_model.objects.create_user("sam", password="x", is_staff=True)


@pytest.fixture
def activity(alice):
    now = timezone.now()
    imp = make_import(alice, SOURCE)
    make_run(imp, "succeeded", queued_at=now - timedelta(days=1))
    make_run(imp, "partial", queued_at=now - timedelta(days=1))
    make_run(imp, "failed", queued_at=now)
    running = make_run(imp, "running", bytes_read=250, bytes_total=1000, started_at=now)
    failing = make_import(alice, SOURCE, name="broken feed", dataset="broken")
    ScheduledImport.objects.filter(pk=failing.pk).update(
        consecutive_failures=3, last_run_status="failed", last_run_at=now
    )
    return running, failing


def test_staff_see_the_chart_the_runs_in_progress_and_the_failing_imports(client, staff, activity):
    running, failing = activity
    client.force_login(staff)

    response = client.get("/dashboard/")

    assert response.status_code == 200
    html = response.content.decode()
    assert html.count('class="bar succeeded"') == 1 and html.count('class="bar partial"') == 1
    assert html.count('class="bar failed"') == 1
    assert f'data-run-id="{running.pk}"' in html and "width: 25.0%" in html
    assert f'data-import-id="{failing.pk}"' in html and "broken feed" in html


def test_the_live_feed_reports_progress_to_staff_only(client, alice, staff, activity):
    running, failing = activity

    client.force_login(alice)
    assert client.get("/dashboard/live.json").status_code == 403
    assert client.get("/dashboard/").status_code == 302  # to the admin login

    client.force_login(staff)
    live = client.get("/dashboard/live.json").json()
    assert [(r["id"], r["percent"]) for r in live["runs"]] == [(running.pk, 25.0)]
    assert [i["id"] for i in live["attention"]] == [failing.pk]
    assert live["attention"][0]["reason"] == "last run failed (3 failures in a row)"


def test_the_chart_counts_today_at_every_view_and_earlier_days_every_few_minutes(
    client, staff, activity
):
    # Given staff viewed the dashboard once
    from django.core.cache import cache

    from schedules import dashboard

    client.force_login(staff)
    first = dashboard.chart_series()
    imp = activity[1]

    # When a run is queued today and one of yesterday's runs changes
    make_run(imp, "failed", queued_at=timezone.now())
    make_run(imp, "succeeded", queued_at=timezone.now() - timedelta(days=1))
    again = dashboard.chart_series()

    # Then today's bar counts the new run at once; yesterday's keeps its count until the
    # reused days lapse, and then counts it too
    assert again[-1]["failed"] == first[-1]["failed"] + 1
    assert again[-2] == first[-2]
    cache.clear()
    assert dashboard.chart_series()[-2]["succeeded"] == first[-2]["succeeded"] + 1
    assert client.get("/dashboard/").status_code == 200


def test_the_live_feed_reads_only_what_it_shows_in_a_fixed_number_of_queries(client, alice, staff):
    # Given imports needing attention for every reason, and runs in progress
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    now = timezone.now()
    client.force_login(staff)

    def add(first: int, count: int) -> None:
        for n in range(first, first + count):
            imp = make_import(alice, SOURCE, name=f"feed {n}", dataset=f"d{n}")
            make_run(imp, "running", bytes_read=10, bytes_total=100, started_at=now)
            late = {"late_since": now, "missed_ticks": 2} if n % 2 else {}
            ScheduledImport.objects.filter(pk=imp.pk).update(
                last_run_status=("failed", "partial", "timed_out")[n % 3],
                consecutive_failures=n,
                description="x" * 2000,
                **late,
            )

    def poll():
        with CaptureQueriesContext(connection) as queries:
            live = client.get("/dashboard/live.json").json()
        return live, queries

    add(0, 2)
    _, few_queries = poll()
    add(2, 6)

    # When staff poll the live feed
    many, many_queries = poll()

    # Then each import and run is listed with its reasons and progress, the number of queries
    # does not grow with them, and the imports' other columns are not read
    assert len(many["attention"]) == 8 and len(many["runs"]) == 8
    assert all(item["reason"] for item in many["attention"])
    assert {run["owner"] for run in many["runs"]} == {"alice"}
    assert len(many_queries) == len(few_queries)
    assert not any('"description"' in q["sql"] for q in many_queries.captured_queries)


def test_a_timed_out_run_is_a_failed_one_on_the_chart(client, staff, alice):
    # The chart left timed-out runs out: a day on which every run timed out showed empty,
    # while the admin counted them failed
    imp = make_import(alice, SOURCE)
    for status in ("timed_out", "timed_out", "failed"):
        make_run(imp, status, queued_at=timezone.now())
    client.force_login(staff)

    html = client.get("/dashboard/").content.decode()

    today = timezone.now().date().isoformat()
    assert f'data-date="{today}" data-total="3"' in html
    assert 'data-status="failed" data-count="3"' in html


def test_lists_cut_at_their_limit_show_the_runs_running_first_and_say_how_many_there_are(
    client, staff, alice, monkeypatch
):
    # Given more waiting runs than the list shows, queued before the one run that is running,
    # and more imports needing attention than it shows
    from schedules import dashboard

    monkeypatch.setattr(dashboard, "ACTIVE_LIMIT", 3)
    monkeypatch.setattr(dashboard, "ATTENTION_LIMIT", 2)
    now = timezone.now()
    for n in range(4):
        imp = make_import(alice, SOURCE, name=f"waiting {n}", dataset=f"w{n}")
        make_run(imp, "queued", queued_at=now - timedelta(hours=1))
        ScheduledImport.objects.filter(pk=imp.pk).update(last_run_status="failed")
    running = make_run(make_import(alice, SOURCE, name="busy", dataset="busy"), "running")
    client.force_login(staff)

    # When staff open the page and poll the live feed
    page = client.get("/dashboard/").content.decode()
    live = client.get("/dashboard/live.json").json()

    # Then the running run is listed first (a backlog of waiting runs hid it), and each list
    # says how many there are in all
    assert live["runs"][0]["id"] == running.pk and len(live["runs"]) == 3
    assert (live["runs_total"], live["attention_total"]) == (5, 4)
    assert len(live["attention"]) == 2
    assert "showing 3 of 5 (those running first, then the oldest waiting)" in page
    assert "showing 2 of 4 (the longest failure streaks first)" in page
