"""While no beat runs, `next_run_at` and `next_runs` list what beat will fire when it is back.

Regression: during an outage the API (`next_run_at`, `next_runs`), the admin and the dashboard
listed ticks older than the grace period, which beat never fires as themselves: an hourly
import with beat down across 10:00, 11:00 and 12:00 listed 10:00, 11:00, 12:00, … at 12:30,
while beat, back, runs one catch-up for all of them (`coalesce`) or none (`skip`), then 13:00.
`late` and `missed_ticks` still tell the outage.

Beat's decision is `schedules.dispatch.plan_ticks`, the function its loop calls; the listing is
`ScheduledImport.next_runs`, through `Schedule.first_to_run`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from itertools import islice, product

import pytest
import time_machine
from django.test import override_settings
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from schedules import dispatch
from schedules.dispatch import plan_ticks
from schedules.models import ImportRun, ScheduledImport
from schedules.ticks import Schedule
from tests.api_support import API, SOURCE, client_for
from tests.factories import make_import

T0 = datetime(2026, 12, 2, 10, 0, 0, tzinfo=UTC)
HOURLY = {
    "interval": {"interval_seconds": 3600},
    "cron": {"schedule_type": "cron", "cron_expression": "0 * * * *", "timezone": "Europe/Berlin"},
}
# After 10:00, 11:00 and 12:00 went by without beat, beat's catch-up (trigger `catchup`) stands
# for the latest missed tick; under `skip` 13:00 comes first.
LISTED_AT_12_30 = {
    "coalesce": [T0 + timedelta(hours=h) for h in range(2, 7)],
    "skip": [T0 + timedelta(hours=h) for h in range(3, 8)],
}

EACH_SCHEDULE_AND_POLICY = pytest.mark.parametrize(
    ("kind", "catchup"), list(product(HOURLY, ["coalesce", "skip"]))
)


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def shown(user, imp: ScheduledImport) -> dict:
    return client_for(user).get(f"{API}/imports/{imp.pk}/").json()


@contextmanager
def beat_down_since_ten(user, until: timedelta, **fields) -> Iterator[ScheduledImport]:
    """An hourly import made at 09:55 (grace period 60 s), and the clock at 10:00 + `until`
    without beat having run."""
    with (
        override_settings(MISSED_TICK_GRACE_SECONDS=60),
        time_machine.travel(T0 - timedelta(minutes=5), tick=False) as clock,
    ):
        imp = make_import(user, SOURCE, **fields)
        clock.move_to(T0 + until)
        yield imp


def beat_is_back() -> list[tuple[datetime, str]]:
    dispatch.dispatch_due(publish=lambda runs: None)
    return list(ImportRun.objects.order_by("scheduled_for").values_list("scheduled_for", "trigger"))


@pytest.mark.django_db(transaction=True)
@EACH_SCHEDULE_AND_POLICY
def test_an_import_whose_ticks_beat_missed_lists_only_what_beat_will_fire(alice, kind, catchup):
    # Given beat was down across 10:00, 11:00 and 12:00
    until = timedelta(hours=2, minutes=30)
    with beat_down_since_ten(alice, until, catchup=catchup, **HOURLY[kind]) as imp:
        # When alice looks at her import at 12:30
        body = shown(alice, imp)

        # Then it lists what beat will fire: no tick it will never run as itself
        listed = LISTED_AT_12_30[catchup]
        assert body["next_runs"] == [iso(tick) for tick in listed]
        assert body["next_run_at"] == iso(listed[0])
        # ... and still says it is late (beat has counted nothing yet)
        assert body["late"] is True and body["missed_ticks"] == 0

        # When beat comes back, it fires exactly that
        fired = beat_is_back()
        if catchup == "coalesce":
            assert fired == [(listed[0], ImportRun.Trigger.CATCHUP)]
        else:
            assert fired == []
        body = shown(alice, imp)
        assert [*(iso(tick) for tick, _trigger in fired), *body["next_runs"]][:5] == [
            iso(tick) for tick in listed
        ]
        assert body["late"] is True and body["missed_ticks"] == 3


@pytest.mark.django_db(transaction=True)
@EACH_SCHEDULE_AND_POLICY
def test_a_tick_within_the_grace_period_stays_listed_after_an_outage(alice, kind, catchup):
    noon = T0 + timedelta(hours=2)
    # Given beat was down across 10:00 and 11:00, and 12:00 is 20 s ago
    twenty_past = noon + timedelta(seconds=20) - T0
    with beat_down_since_ten(alice, twenty_past, catchup=catchup, **HOURLY[kind]) as imp:
        # When alice looks at her import
        body = shown(alice, imp)

        # Then 12:00 is listed first: beat still fires it as itself (under coalesce, as the
        # catch-up of the two missed ones)
        assert body["next_runs"] == [iso(noon + timedelta(hours=h)) for h in range(5)]
        assert body["next_run_at"] == iso(noon)
        assert body["late"] is True

        # When beat comes back, it fires 12:00 and lists 13:00 next
        trigger = "catchup" if catchup == "coalesce" else "schedule"
        assert beat_is_back() == [(noon, trigger)]
        body = shown(alice, imp)
        assert body["next_runs"][0] == iso(noon + timedelta(hours=1))
        assert body["missed_ticks"] == 2


@pytest.mark.django_db(transaction=True)
def test_the_admin_lists_the_same_runs_as_the_api_during_an_outage(admin_client, alice):
    # Given beat was down across 10:00, 11:00 and 12:00
    until = timedelta(hours=2, minutes=30)
    with beat_down_since_ten(alice, until, catchup="skip", **HOURLY["interval"]) as imp:
        # When an operator opens the import and the list of imports
        page = admin_client.get(f"/admin/schedules/scheduledimport/{imp.pk}/change/")
        listed = admin_client.get("/admin/schedules/scheduledimport/")

    # Then neither shows a missed tick as a next run, and both say the import is late
    for html in (page.content.decode(), listed.content.decode()):
        assert 'datetime="2026-12-02T13:00:00+00:00"' in html
        assert 'datetime="2026-12-02T10:00:00+00:00"' not in html
        assert "overdue since 2026-12-02 10:00 UTC" in html


@pytest.mark.django_db(transaction=True)
def test_the_dashboards_next_runs_are_the_runs_beat_will_make(admin_client, alice):
    # Given beat was down across 10:00, 11:00 and 12:00 for two imports
    until = timedelta(hours=2, minutes=30)
    with beat_down_since_ten(alice, until, catchup="skip", **HOURLY["interval"]) as skipping:
        coalescing = make_import(alice, SOURCE, name="coalesce", dataset="c", **HOURLY["cron"])
        # (made at 09:55 as well: its first tick, 10:00, is still to dispatch)
        ScheduledImport.objects.filter(pk=coalescing.pk).update(next_run_at=T0)

        # When an operator looks at the dashboard's next runs
        upcoming = admin_client.get("/dashboard/health.json").json()["upcoming"]

    # Then each import's is the next run beat will make, soonest first
    assert [(row["id"], row["next_run_at"]) for row in upcoming] == [
        (coalescing.pk, (T0 + timedelta(hours=2)).isoformat()),
        (skipping.pk, (T0 + timedelta(hours=3)).isoformat()),
    ]


# --- the listing is beat's plan, for any schedule, outage and grace period -----------------

SCHEDULES = [
    Schedule(interval_seconds=60),
    Schedule(interval_seconds=900),
    Schedule(interval_seconds=3600),
    Schedule(interval_seconds=86400),
    Schedule(cron_expression="0 * * * *", timezone="Europe/Berlin"),
    Schedule(cron_expression="*/15 1-3 * * *", timezone="Europe/Berlin"),
    Schedule(cron_expression="30 2 * * *", timezone="Europe/Berlin"),
    Schedule(cron_expression="0 9 * * mon-fri", timezone="America/New_York"),
    Schedule(cron_expression="*/7 * * * *", timezone="Australia/Lord_Howe"),
    Schedule(cron_expression="0 0 1 * *", timezone="UTC"),
]
# Around the 2026 DST changes of Europe and the US, and anywhere in the year.
STARTS = st.one_of(
    st.sampled_from(
        [datetime(2026, 3, 8, tzinfo=UTC), datetime(2026, 3, 29, tzinfo=UTC),
         datetime(2026, 10, 25, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC)]
    ).flatmap(lambda day: st.integers(-36 * 60, 36 * 60).map(lambda m: day + timedelta(minutes=m))),
    st.datetimes(
        min_value=datetime(2026, 1, 1), max_value=datetime(2026, 12, 31), timezones=st.just(UTC)
    ),
)  # fmt: skip
LISTED = 6


@hypothesis_settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    schedule=st.sampled_from(SCHEDULES),
    start=STARTS,
    down_for=st.one_of(st.floats(0, 120), st.floats(0, 3 * 86400)),
    grace=st.sampled_from([30, 60, 600, 3600]),
    catchup=st.sampled_from(["coalesce", "skip"]),
)
def test_the_listed_runs_are_the_runs_beat_plans_whenever_it_comes_back(
    schedule, start, down_for, grace, catchup
):
    # Given an import whose first undispatched tick is `due`, and beat back `down_for` s later
    imp = ScheduledImport(
        schedule_type="interval" if schedule.interval_seconds else "cron",
        interval_seconds=schedule.interval_seconds,
        cron_expression=schedule.cron_expression,
        timezone=schedule.timezone,
        status="active",
        catchup=catchup,
    )
    due = imp.next_run_at = imp.schedule.next_after(start)
    now = due + timedelta(seconds=down_for)

    # When the import is shown at `now`
    with time_machine.travel(now, tick=False), override_settings(MISSED_TICK_GRACE_SECONDS=grace):
        listed = imp.next_runs(LISTED)

    # Then it lists the runs beat makes at `now`, then the ticks from its next one
    plan = plan_ticks(imp.schedule, due, now, timedelta(seconds=grace), catchup)
    planned = [tick for tick, _trigger in plan.runs]
    after = islice(imp.schedule.ticks_after(plan.next_run_at), LISTED)
    assert listed == [*planned, plan.next_run_at, *after][:LISTED]
