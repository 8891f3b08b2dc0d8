"""A daily 02:30 import in Europe/Berlin runs once on the spring-forward day (02:30 does not
exist: it runs at 03:00) and once on the fall-back day (02:30 happens twice: it runs at the
first). Time is frozen and stepped minute by minute through the real beat scheduler
(`ImportScheduler.tick`), its dispatch task and `dispatch_scheduled_tick`."""

import itertools
from datetime import UTC, datetime, timedelta
from unittest import mock
from zoneinfo import ZoneInfo

import pytest
import redis
import time_machine
from django.conf import settings

from project.beat import LEADER_LEASE, ImportScheduler
from project.celery import app
from schedules.models import ImportRun
from tests.factories import make_import

pytestmark = pytest.mark.django_db(transaction=True)

BERLIN = ZoneInfo("Europe/Berlin")


@pytest.fixture
def eager_beat():
    """Beat's messages run in this process; the runs they create are not executed. Its
    maintenance (reconciliation, the sweep) runs every half hour of the travel, not every
    minute: a day stepped through cost it about 900 passes, 60 s, which found nothing (no
    tick is missed when beat wakes at each one); it still runs, and would run a catch-up."""
    import tasks.tasks  # noqa: F401  (registers the tasks, so that beat runs them eagerly)

    redis.Redis.from_url(settings.REDIS_URL).delete(LEADER_LEASE)
    before = app.conf.task_always_eager, app.conf.beat_schedule
    app.conf.task_always_eager = True
    app.conf.beat_schedule = {
        name: {**entry, "schedule": MAINTENANCE_EVERY, "options": {"expires": MAINTENANCE_EVERY}}
        for name, entry in before[1].items()
        if entry["schedule"] < MAINTENANCE_EVERY
    } | {name: entry for name, entry in before[1].items() if entry["schedule"] >= MAINTENANCE_EVERY}
    with mock.patch("schedules.services.send_run"):
        yield
    app.conf.task_always_eager, app.conf.beat_schedule = before
    redis.Redis.from_url(settings.REDIS_URL).delete(LEADER_LEASE)


MAINTENANCE_EVERY = 1800.0


STEP = timedelta(minutes=2)


def in_berlin(owner, rule: str):
    """An import of `owner` on the cron `rule`, in Europe/Berlin."""
    return make_import(owner, "http://127.0.0.1/p.csv", schedule_type="cron",
                       cron_expression=rule, interval_seconds=None,
                       timezone="Europe/Berlin")  # fmt: skip


def run_beat(alice, start: datetime, hours: int, rule: str = "30 2 * * *") -> list[datetime]:
    """Create the import at `start`, step beat through `hours` (two minutes at a time, as a beat
    would wake up); return the runs' ticks in Berlin time."""
    # Travel in UTC: a ZoneInfo destination would also move the process's local timezone.
    with time_machine.travel(start.astimezone(UTC), tick=False) as traveller:
        imp = in_berlin(alice, rule)
        scheduler = ImportScheduler(app=app)
        try:
            for _ in range(int(timedelta(hours=hours) / STEP)):
                while scheduler.tick() == 0:  # one due entry per call; 0 means "call again"
                    pass
                traveller.shift(STEP)
        finally:
            scheduler.close()
    runs = ImportRun.objects.filter(scheduled_import=imp).order_by("scheduled_for")
    return [r.scheduled_for.astimezone(BERLIN) for r in runs]


def test_it_runs_once_on_the_spring_forward_day_at_three(alice, eager_beat):
    # 2026-03-29: at 02:00 CET the clocks jump to 03:00 CEST.
    # From the evening before to the morning after.
    ticks = run_beat(alice, datetime(2026, 3, 28, 22, 0, tzinfo=BERLIN), hours=8)

    print(f"\n[figures] DST spring forward: runs={len(ticks)} at={[t.isoformat() for t in ticks]}")
    on_the_day = [t for t in ticks if t.date().isoformat() == "2026-03-29"]
    assert len(on_the_day) == 1
    assert on_the_day[0] == datetime(2026, 3, 29, 3, 0, tzinfo=BERLIN)
    assert len(ticks) == 1


def test_it_runs_once_on_the_fall_back_day_at_the_first_half_past_two(alice, eager_beat):
    # 2026-10-25: at 03:00 CEST the clocks go back to 02:00 CET; 02:30 happens twice.
    ticks = run_beat(alice, datetime(2026, 10, 24, 22, 0, tzinfo=BERLIN), hours=8)

    print(f"\n[figures] DST fall back: runs={len(ticks)} at={[t.isoformat() for t in ticks]}")
    assert len(ticks) == 1
    assert ticks[0].astimezone(UTC) == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)  # 02:30 CEST


def test_the_schedule_names_one_tick_per_dst_day(alice):
    imp = in_berlin(alice, "30 2 * * *")
    fall = imp.next_runs(3, after=datetime(2026, 10, 24, 12, tzinfo=UTC))
    assert [t.astimezone(BERLIN).isoformat() for t in fall] == [
        "2026-10-25T02:30:00+02:00",
        "2026-10-26T02:30:00+01:00",
        "2026-10-27T02:30:00+01:00",
    ]
    # Every moment of the repeated hour stands for the first 02:30, so a beat firing at the
    # second one dispatches a tick that already has its run.
    for minute in range(0, 120, 7):
        moment = datetime(2026, 10, 25, 0, 30, tzinfo=UTC) + timedelta(minutes=minute)
        assert imp.tick_for(moment) == datetime(2026, 10, 25, 0, 30, tzinfo=UTC), moment
    spring = imp.next_runs(2, after=datetime(2026, 3, 28, 12, tzinfo=UTC))
    assert [t.astimezone(BERLIN).isoformat() for t in spring] == [
        "2026-03-29T03:00:00+02:00",
        "2026-03-30T02:30:00+02:00",
    ]


def test_an_every_quarter_hour_import_keeps_running_through_the_repeated_hour(alice):
    imp = in_berlin(alice, "*/15 * * * *")
    ticks = imp.next_runs(12, after=datetime(2026, 10, 25, 0, 0, 1, tzinfo=UTC))
    gaps = {(b - a).total_seconds() for a, b in itertools.pairwise(ticks)}
    assert gaps == {900.0}


# A wildcard job (`*` leading its minute or hour) runs by the new time, as Vixie cron's: in
# both 2 o'clock hours in the autumn, and not at all for the 2 o'clock hour spring skips.
# croniter folded the skipped times into a 03:00 run, so `*/30 2 * * *` ran as a fixed job in
# spring and as a wildcard one in the autumn.
WILDCARD_IN_TWO = "*/30 2 * * *"


def test_a_wildcard_job_in_the_skipped_hour_does_not_run_at_three(alice, eager_beat):
    ticks = run_beat(alice, datetime(2026, 3, 28, 22, 0, tzinfo=BERLIN), hours=30,
                     rule=WILDCARD_IN_TWO)  # fmt: skip

    print(f"\n[figures] DST spring forward, {WILDCARD_IN_TWO}: at={[t.isoformat() for t in ticks]}")
    assert [t.isoformat() for t in ticks] == [
        "2026-03-30T02:00:00+02:00",
        "2026-03-30T02:30:00+02:00",
    ]


def test_a_wildcard_job_in_the_repeated_hour_runs_in_both(alice, eager_beat):
    ticks = run_beat(alice, datetime(2026, 10, 24, 22, 0, tzinfo=BERLIN), hours=8,
                     rule=WILDCARD_IN_TWO)  # fmt: skip

    assert [t.isoformat() for t in ticks] == [
        "2026-10-25T02:00:00+02:00",
        "2026-10-25T02:30:00+02:00",
        "2026-10-25T02:00:00+01:00",
        "2026-10-25T02:30:00+01:00",
    ]


@pytest.mark.parametrize("rule", [WILDCARD_IN_TWO, "* 2 * * *", "*/15 2 * * *"])
def test_a_wildcard_job_lists_no_tick_for_the_skipped_hour(alice, rule):
    imp = in_berlin(alice, rule)
    listed = imp.next_runs(1, after=datetime(2026, 3, 28, 12, tzinfo=UTC))
    assert listed[0].astimezone(BERLIN).date().isoformat() == "2026-03-30"
    # A dispatch just after the jump stands for the day before's last tick, not for one at 03:00.
    standing_for = imp.tick_for(datetime(2026, 3, 29, 1, 10, tzinfo=UTC)).astimezone(BERLIN)
    assert standing_for.date().isoformat() == "2026-03-28"
