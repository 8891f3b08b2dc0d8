"""In a long outage, the dashboard's next runs and the admin's imports sorted by "next run" say
how many overdue imports they could not place, and since when beat has dispatched nothing.

Regression: the next runs of overdue imports are worked out per group (schedule, catch-up, tick
due), at most OVERDUE_GROUPS_LIMIT groups (200). Past it, the dashboard left the imports of the
groups left out of its next runs, and the admin sorted them by their oldest tick (first, before
imports whose next runs came sooner), both without a word.
"""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.test import override_settings

from schedules.models import ScheduledImport
from tests.api_support import SOURCE
from tests.factories import make_import

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 12, 2, 10, 0, 0, tzinfo=UTC)
NOW = T0 + timedelta(hours=2, minutes=30, seconds=20)
IMPORTS_LIST = "/admin/schedules/scheduledimport/"


@pytest.fixture
def beat_down_since_ten(alice, bob):
    """At 12:30:20, beat down since 10:00 (grace 60 s): one cron import of alice's run once
    when beat is back (`coalesce`), six hourly imports of bob's and alice's whose missed ticks
    beat skips, and a daily one due at 12:35, not overdue."""
    with (
        override_settings(MISSED_TICK_GRACE_SECONDS=60),
        time_machine.travel(T0 - timedelta(minutes=5), tick=False) as clock,
    ):
        cron = {"schedule_type": "cron", "cron_expression": "0 * * * *", "timezone": "UTC"}
        make_import(alice, SOURCE, name="coalesce", dataset="coalesce", catchup="coalesce", **cron)
        for n in range(6):
            owner = bob if n % 2 else alice
            make_import(owner, SOURCE, name=f"skip {n}", dataset=f"skip {n}", catchup="skip")
        daily = {"schedule_type": "cron", "cron_expression": "35 12 * * *", "timezone": "UTC"}
        make_import(alice, SOURCE, name="due 12:35", dataset="due 12:35", **daily)
        clock.move_to(NOW)
        yield


@pytest.fixture
def one_group_worked_out(monkeypatch):
    """Lists work out the next run of one group of overdue imports only (200 in production):
    the cron import's (groups are taken by tick due, then schedule type); the six hourly
    imports beat skips make the group left."""
    monkeypatch.setattr("schedules.overdue_next_runs.OVERDUE_GROUPS_LIMIT", 1)


def words(page: str, tag: str = " ") -> str:
    """The text of `page`, each tag read as `tag`, its spaces collapsed."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", tag, page)).split())


def test_the_dashboard_says_how_many_overdue_imports_it_could_not_place_and_since_when(
    admin_client, beat_down_since_ten, one_group_worked_out
):
    # Given beat down since 10:00, and more groups of overdue imports than a list works out

    # When an operator opens the dashboard, and its script polls the next runs
    page = admin_client.get("/dashboard/").content.decode()
    polled = admin_client.get("/dashboard/health.json").json()

    # Then under the next runs the page says how many overdue imports are not among them, and
    # since when beat has dispatched no tick (a time the page's script shows in the viewer's
    # zone)
    cut = re.search(r'<p class="cut" id="upcoming-cut"( hidden)?>(.*?)</p>', page, re.S)
    assert cut and not cut[1]
    assert words(cut[2], tag="") == (
        "6 overdue imports could not be placed by their next run: beat has dispatched no tick"
        " since 2026-12-02 10:00:00 UTC, and the next runs of only the 1 longest overdue groups"
        " of schedules are worked out; they are not among these next runs, however soon beat"
        " would run them."
    )
    assert '<time datetime="2026-12-02T10:00:00+00:00"' in cut[2]
    # And the poll says the same, as the page writes it
    assert polled["unplaced"] == {"imports": 6, "since": "2026-12-02T10:00:00+00:00"}
    assert polled["upcoming_cut"] == cut[2]
    assert [row["name"] for row in polled["upcoming"]] == ["coalesce", "due 12:35"]


def test_the_dashboard_says_nothing_more_when_every_overdue_import_is_placed(
    admin_client, beat_down_since_ten
):
    # Given beat down since 10:00, every group of overdue imports worked out

    # When an operator opens the dashboard, and its script polls the next runs
    page = admin_client.get("/dashboard/").content.decode()
    polled = admin_client.get("/dashboard/health.json").json()

    # Then the next runs hold them all, and the words about unplaced imports are hidden
    assert '<p class="cut" id="upcoming-cut" hidden></p>' in page
    assert polled["unplaced"] is None
    assert polled["upcoming_cut"] == ""
    assert len(polled["upcoming"]) == 8


def next_run_column(client) -> str:
    page = client.get(IMPORTS_LIST).content.decode()
    column = re.search(r'class="sortable column-next_run[^"]*">.*?href="\?o=(\d+)"', page, re.S)
    assert column, "the next run column is sortable"
    return column[1]


def test_the_admins_imports_sorted_by_next_run_say_how_many_could_not_be_placed(
    admin_client, beat_down_since_ten, one_group_worked_out
):
    # Given beat down since 10:00, and more groups of overdue imports than a list works out
    column = next_run_column(admin_client)

    # When an operator sorts the imports by next run, either way, or does not
    ascending = words(admin_client.get(f"{IMPORTS_LIST}?o={column}").content.decode())
    descending = words(admin_client.get(f"{IMPORTS_LIST}?o=-{column}").content.decode())
    by_name = words(admin_client.get(IMPORTS_LIST).content.decode())

    # Then a sorted list says how many are out of place, since when beat is down, and how
    # they are ordered
    said = (
        "6 overdue imports could not be placed by their next run: beat has dispatched no tick"
        " since 2026-12-02 10:00 UTC, and the next runs of only the 1 longest overdue groups of"
        " schedules are worked out; in this order they come by the oldest tick they missed, not"
        " by the next run shown."
    )
    assert said in ascending
    assert said in descending
    # And a list not sorted by next run says nothing of it
    assert "could not be placed" not in by_name


def test_the_admins_imports_sorted_by_next_run_say_nothing_when_every_one_is_placed(
    admin_client, beat_down_since_ten
):
    # Given beat down since 10:00, every group of overdue imports worked out
    column = next_run_column(admin_client)

    # When an operator sorts the imports by next run
    page = words(admin_client.get(f"{IMPORTS_LIST}?o={column}").content.decode())

    # Then nothing is said of unplaced imports, and every active import is listed
    assert "could not be placed" not in page
    assert ScheduledImport.objects.filter(status="active").count() == 8
