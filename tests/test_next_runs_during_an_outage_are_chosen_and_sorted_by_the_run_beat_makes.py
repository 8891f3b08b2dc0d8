"""During an outage, the dashboard's next runs and the admin's "next run" column are chosen and
sorted by the run beat will make, as they show it.

Regression: both showed each import's next run as beat makes it (`next_run_listed`) but chose
and sorted their rows by `next_run_at`, which keeps beat's place (its oldest tick not
dispatched). With beat down since 10:00, at 12:30 the dashboard's ten were hourly imports whose
missed ticks beat skips (shown at 13:00), while imports due at 12:30 and 12:31 were left out;
the admin's list sorted by "next run" put those 13:00 imports first, before 12:30.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

from schedules import dashboard
from schedules.models import ScheduledImport
from tests.api_support import SOURCE
from tests.factories import make_import

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 12, 2, 10, 0, 0, tzinfo=UTC)
# Beat down since 10:00; the grace period is 60 s.
NOW = T0 + timedelta(hours=2, minutes=30, seconds=20)
HOURLY_CRON = {"schedule_type": "cron", "cron_expression": "0 * * * *", "timezone": "Europe/Berlin"}
HOURLY = {"interval_seconds": 3600}


def daily_at(minute: int) -> dict:
    """A daily rule at 12:`minute` UTC: its tick today is still to come at 12:29."""
    return {"schedule_type": "cron", "cron_expression": f"{minute} 12 * * *", "timezone": "UTC"}


@contextmanager
def beat_down_since_ten() -> Iterator[None]:
    """Imports made at 09:55 (their first ticks not dispatched since), and the clock at 12:30:20
    without beat having run."""
    with (
        override_settings(MISSED_TICK_GRACE_SECONDS=60),
        time_machine.travel(T0 - timedelta(minutes=5), tick=False) as clock,
    ):
        yield clock


def made(owner, name: str, **fields) -> ScheduledImport:
    return make_import(owner, SOURCE, name=name, dataset=name, **fields)


@pytest.fixture
def an_outage(alice, bob):
    """At 12:30:20, beat down since 10:00 (grace 60 s): ten hourly imports whose missed ticks
    beat skips (next run 13:00), one whose it runs once (`coalesce`, as 12:00's run), one due at
    12:30 (within the grace period), and eight daily imports due at 12:31 to 12:38."""
    with beat_down_since_ten() as clock:
        skipping = [
            made(bob if n % 2 else alice, f"hourly skip {n}", catchup="skip", **HOURLY)
            for n in range(10)
        ]
        coalescing = made(alice, "hourly coalesce", catchup="coalesce", **HOURLY_CRON)
        within_grace = made(bob, "due 12:30", **daily_at(30))
        on_time = [made(alice, f"due 12:{31 + n}", **daily_at(31 + n)) for n in range(8)]
        paused = made(bob, "paused", catchup="skip", **HOURLY)
        ScheduledImport.objects.filter(pk=paused.pk).update(status="paused")
        clock.move_to(NOW)
        yield {
            "skipping": skipping,
            "coalescing": coalescing,
            "within_grace": within_grace,
            "on_time": on_time,
            "paused": paused,
        }


def at(hour: int, minute: int) -> str:
    return datetime(2026, 12, 2, hour, minute, tzinfo=UTC).isoformat()


def test_the_dashboards_next_runs_are_the_ten_soonest_runs_beat_makes(admin_client, an_outage):
    # Given beat down since 10:00, at 12:30:20

    # When an operator looks at the dashboard's next runs
    upcoming = admin_client.get("/dashboard/health.json").json()["upcoming"]

    # Then they are the ten soonest runs beat will make, soonest first: the coalesced catch-up
    # (12:00, made as soon as beat is back), 12:30 still within the grace period, then the
    # imports due from 12:31; none of the hourly imports beat skips to 13:00
    assert [(row["name"], row["next_run_at"]) for row in upcoming] == [
        ("hourly coalesce", at(12, 0)),
        ("due 12:30", at(12, 30)),
        *((f"due 12:{31 + n}", at(12, 31 + n)) for n in range(8)),
    ]


def test_overdue_and_on_time_imports_whose_runs_fall_together_are_listed_by_id(
    admin_client, an_outage, alice
):
    # Given two daily imports due at 13:00, made after the hourly ones beat skips to 13:00,
    # and the imports due from 12:31 paused
    daily_at_13 = {"schedule_type": "cron", "cron_expression": "0 13 * * *", "timezone": "UTC"}
    later = [made(alice, f"daily 13:00 {n}", **daily_at_13) for n in range(2)]
    paused = [imp.pk for imp in an_outage["on_time"]]
    ScheduledImport.objects.filter(pk__in=paused).update(status="paused")

    # When an operator looks at the dashboard's next runs
    upcoming = admin_client.get("/dashboard/health.json").json()["upcoming"]

    # Then the runs at 13:00 come in the order of their imports, whichever is overdue
    assert [row["name"] for row in upcoming] == [
        "hourly coalesce",
        "due 12:30",
        *(f"hourly skip {n}" for n in range(8)),
    ]
    assert {row["next_run_at"] for row in upcoming[2:]} == {at(13, 0)}
    assert not {row["id"] for row in upcoming} & {imp.pk for imp in later}


def test_the_dashboards_next_runs_read_overdue_imports_in_statements_that_do_not_grow(
    alice, an_outage
):
    # Given the outage's overdue imports, and the next runs listed once (a schedule's words
    # are worked out once per process)
    dashboard.upcoming_runs()
    with CaptureQueriesContext(connection) as few:
        dashboard.upcoming_runs()

    # When thirty more hourly imports are overdue
    for n in range(30):
        made(alice, f"more {n}", catchup="skip", **HOURLY)
    ScheduledImport.objects.filter(name__startswith="more ").update(next_run_at=T0)
    with CaptureQueriesContext(connection) as many:
        listed = dashboard.upcoming_runs()

    # Then they are read in as many statements, three at most
    assert len(listed) == 10
    assert len(many.captured_queries) == len(few.captured_queries) <= 3


def admin_list_order(client, direction: str = "") -> list[int]:
    """The ids of the imports in the admin's list, sorted by its "next run" column."""
    page = client.get("/admin/schedules/scheduledimport/").content.decode()
    column = re.search(r'class="sortable column-next_run[^"]*">.*?href="\?o=(\d+)"', page, re.S)
    assert column, "the next run column is sortable"
    page = client.get(f"/admin/schedules/scheduledimport/?o={direction}{column[1]}").content
    return [
        int(pk) for pk in re.findall(rb'<th class="field-name"><a href="[^"]*?/(\d+)/change/', page)
    ]


def test_the_admins_imports_sorted_by_next_run_are_in_the_order_of_the_runs_beat_makes(
    admin_client, an_outage
):
    # Given beat down since 10:00, at 12:30:20
    soonest_first = [
        an_outage["coalescing"].pk,
        an_outage["within_grace"].pk,
        *(imp.pk for imp in an_outage["on_time"]),
    ]
    skipping = {imp.pk for imp in an_outage["skipping"]}
    paused = an_outage["paused"].pk

    # When an operator sorts the list of imports by next run, soonest first
    ascending = admin_list_order(admin_client)

    # Then the imports come in the order of the runs shown: 12:00's catch-up, 12:30, 12:31 to
    # 12:38, then those beat skips to 13:00; the paused one, which has none, last
    assert ascending[: len(soonest_first)] == soonest_first
    assert set(ascending[len(soonest_first) : -1]) == skipping
    assert ascending[-1] == paused

    # When sorted latest first, it is that order the other way round
    descending = [pk for pk in admin_list_order(admin_client, "-") if pk != paused]
    assert descending[-len(soonest_first) :] == soonest_first[::-1]
    assert set(descending[: len(skipping)]) == skipping


def test_overdue_imports_past_the_groups_a_list_works_out_keep_their_oldest_tick_in_the_admin(
    admin_client, an_outage, monkeypatch
):
    # Given a list works out the next run of one group of overdue imports only: the coalesced
    # hourly import's (the groups are taken by their tick due, then schedule type: cron first)
    monkeypatch.setattr("schedules.overdue_next_runs.OVERDUE_GROUPS_LIMIT", 1)

    # When an operator sorts the list of imports by next run, and looks at the dashboard
    ascending = admin_list_order(admin_client)
    upcoming = admin_client.get("/dashboard/health.json").json()["upcoming"]

    # Then the hourly imports beat skips, not worked out, are sorted by their oldest tick
    # (10:00) as before, and the dashboard leaves them out; what it lists is still beat's
    skipping = {imp.pk for imp in an_outage["skipping"]}
    assert set(ascending[:10]) == skipping
    assert [row["next_run_at"] for row in upcoming] == [
        at(12, 0),
        at(12, 30),
        *(at(12, 31 + n) for n in range(8)),
    ]
