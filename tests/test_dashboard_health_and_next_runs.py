"""The dashboard's health panel (beat, workers, broker, late imports; a broker that is down named
with where and why, in plain words), its next runs, the phase of a running run, and times
written as `<time>` for the viewer's timezone."""

import re
from datetime import UTC, datetime

import pytest
import time_machine

from schedules.models import ScheduledImport
from tests.api_support import SOURCE, make_run
from tests.factories import make_import

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client, django_user_model):
    client.force_login(django_user_model.objects.create_user("sam", password="x", is_staff=True))
    return client


def test_the_health_panel_names_beat_workers_broker_and_late_imports(staff_client):
    html = staff_client.get("/dashboard/").content.decode()

    # No beat and no worker run in this test; the broker (the suite's Redis) answers
    assert '<li class="health-item bad" data-check="beat">' in html
    assert "no beat is leading" in html
    assert '<li class="health-item bad" data-check="workers">' in html
    assert "no worker answers" in html
    assert '<li class="health-item ok" data-check="broker">' in html
    assert re.search(r"up, \d+ waiting", html)  # earlier tests may have left messages
    assert '<li class="health-item ok" data-check="late imports">' in html
    assert '<li class="health-item ok" data-check="backlog">' in html
    assert '<li class="health-item ok" data-check="redis">' in html
    assert '<li class="health-item ok" data-check="processed files">' in html
    assert '<li class="health-item ok" data-check="notifications">' in html


def test_a_broker_that_is_down_is_named_with_where_and_why_in_plain_words(
    staff_client, monkeypatch, refused_port
):
    # Given the web process's broker on a port where nothing listens (Celery reads the
    # variable at every connection; its password must not show)
    port = refused_port
    monkeypatch.setenv("CELERY_BROKER_URL", f"redis://:broker-secret@127.0.0.1:{port}/0")

    health = staff_client.get("/dashboard/health.json").json()["health"]

    broker = next(item for item in health if item["name"] == "broker")
    assert broker == {
        "name": "broker",
        "state": "bad",
        "text": f"down: cannot reach the broker at 127.0.0.1:{port}: connection refused",
    }


@time_machine.travel(datetime(2026, 12, 2, 19, 37, tzinfo=UTC), tick=False)
def test_the_next_runs_are_listed_soonest_first_with_their_schedule(staff_client, alice):
    make_import(alice, SOURCE, name="hourly", interval_seconds=3600)
    make_import(alice, SOURCE, name="every 15", dataset="q", interval_seconds=900)
    paused = make_import(alice, SOURCE, name="paused", dataset="p", interval_seconds=60)
    paused.status = ScheduledImport.Status.PAUSED
    paused.save()

    html = staff_client.get("/dashboard/").content.decode()
    upcoming = html.split('id="upcoming-runs"')[1].split("</table>")[0]

    assert upcoming.index("every 15") < upcoming.index("hourly")
    assert "paused" not in upcoming
    assert (
        '<time datetime="2026-12-02T19:45:00+00:00" title="2026-12-02 19:45:00 UTC" '
        'data-relative="in">2026-12-02 19:45:00 UTC</time>'
    ) in upcoming
    assert "Every 15 minutes" in upcoming


def test_the_next_runs_read_of_each_import_only_what_they_show(staff_client, alice):
    # Given imports with long descriptions and a source credential's columns
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    for n in range(3):
        imp = make_import(alice, SOURCE, name=f"feed {n}", dataset=f"d{n}")
        ScheduledImport.objects.filter(pk=imp.pk).update(description="x" * 2000)

    # When the health feed lists the next runs
    with CaptureQueriesContext(connection) as queries:
        upcoming = staff_client.get("/dashboard/health.json").json()["upcoming"]

    # Then each is listed with its schedule in words, from a query that reads neither the
    # imports' other columns nor their owner's
    assert [row["name"] for row in upcoming] == ["feed 0", "feed 1", "feed 2"]
    assert {row["schedule"] for row in upcoming} == {"Every hour"}
    listed = [q["sql"] for q in queries.captured_queries if "ORDER BY i.next_run_at" in q["sql"]]
    assert len(listed) == 1, listed
    assert "description" not in listed[0] and "password" not in listed[0]


def test_a_running_run_reports_its_phase(staff_client, alice):
    imp = make_import(alice, SOURCE)
    run = make_run(imp, "running", bytes_read=1000, bytes_total=1000, phase="merge")

    live = staff_client.get("/dashboard/live.json").json()
    html = staff_client.get("/dashboard/").content.decode()

    assert [(r["id"], r["percent"], r["phase"]) for r in live["runs"]] == [(run.pk, 100.0, "merge")]
    assert 'class="progress working"' in html and '<span class="phase">merge</span>' in html


def test_the_health_feed_is_for_staff_only(client, staff_client, alice):
    data = staff_client.get("/dashboard/health.json").json()
    assert [item["name"] for item in data["health"]] == [
        "beat",
        "workers",
        "broker",
        "late imports",
        "backlog",
        "redis",
        "processed files",
        "notifications",
    ]

    client.force_login(alice)
    assert client.get("/dashboard/health.json").status_code == 403
