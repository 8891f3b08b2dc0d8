"""Property: whatever cron rule and zone is accepted, beat fires exactly the ticks `next_runs`
lists, DST days included, and a late dispatch records the tick it was due for.

Beat's decision is `schedules.dispatch.plan_ticks`, the function beat's loop calls with the
import's due tick and the (frozen, simulated) time at which it wakes; the listing is
`ScheduledImport.next_runs`, what the API and the admin show. An independent reading of the
cron fields checks that every tick is a minute the rule names, in the import's zone.
"""

from __future__ import annotations

import zoneinfo
from datetime import UTC, datetime, timedelta

from django.core.exceptions import ValidationError
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from schedules.dispatch import plan_ticks
from schedules.models import ScheduledImport
from schedules.ticks import expand_macro
from schedules.validation import validate_cron_expression

GRACE = timedelta(seconds=60)
TICKS = 25

# Zones with DST (northern and southern, 30-minute shifts, the Chatham islands' :45 offset) and
# without.
ZONES = [
    "UTC", "Europe/Berlin", "America/New_York", "America/Sao_Paulo", "Australia/Lord_Howe",
    "Australia/Sydney", "Pacific/Chatham", "Asia/Kolkata", "America/Santiago", "Europe/London",
]  # fmt: skip
# The 2026 DST transitions of most of these zones, where a start date is most telling.
DST_DAYS = [
    datetime(2026, 3, 8, tzinfo=UTC), datetime(2026, 3, 29, tzinfo=UTC),
    datetime(2026, 4, 5, tzinfo=UTC), datetime(2026, 10, 4, tzinfo=UTC),
    datetime(2026, 10, 25, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC),
]  # fmt: skip


def field(low: int, high: int, names: list[str] | None = None) -> st.SearchStrategy[str]:
    number = st.integers(low, high)
    atom = st.one_of(
        st.just("*"),
        number.map(str),
        st.tuples(number, number).map(lambda ab: f"{min(ab)}-{max(ab)}"),
        st.tuples(st.sampled_from(["*", f"{low}-{high}"]), st.integers(1, 12)).map(
            lambda a: f"{a[0]}/{a[1]}"
        ),
        # from a value to the end of the field (cron's `5/1` weekdays: Friday to Sunday, 7)
        st.tuples(number, st.integers(1, 12)).map(lambda a: f"{a[0]}/{a[1]}"),
    )
    if names:
        atom = st.one_of(atom, st.sampled_from(names))
    return st.lists(atom, min_size=1, max_size=3).map(",".join)


MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]

cron_expressions = st.one_of(
    st.tuples(
        field(0, 59), field(0, 23), field(1, 31), field(1, 12, MONTHS), field(0, 7, DAYS)
    ).map(" ".join),
    st.sampled_from(
        ["@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"]
    ),
)
starts = st.one_of(
    st.sampled_from(DST_DAYS).flatmap(
        lambda day: st.integers(-36 * 60, 36 * 60).map(lambda m: day + timedelta(minutes=m))
    ),
    st.datetimes(
        min_value=datetime(2026, 1, 1), max_value=datetime(2026, 12, 31), timezones=st.just(UTC)
    ),
)


def cron_import(expression: str, zone: str) -> ScheduledImport:
    return ScheduledImport(
        schedule_type="cron", cron_expression=expression, timezone=zone, status="active"
    )


def expand(field_text: str, low: int, high: int, names: list[str] | None) -> set[int]:
    """An independent reading of one cron field: the numbers it names."""
    values: set[int] = set()
    for atom in field_text.lower().split(","):
        base, _, step = atom.partition("/")
        for index, name in enumerate(names or [], start=0 if names is DAYS else 1):
            base = base.replace(name, str(index))
        if base == "*":
            first, last = low, high
        elif "-" in base:
            first, last = (int(part) for part in base.split("-"))
        else:
            first = last = int(base)
            if step:
                last = high
        values.update(range(first, last + 1, int(step or 1)))
    return values


def names_the_minute(expression: str, local: datetime) -> bool:
    minute, hour, dom, month, dow = expand_macro(expression).split()
    days_of_week = {d % 7 for d in expand(dow, 0, 7, DAYS)}
    dom_ok = local.day in expand(dom, 1, 31, None)
    dow_ok = (local.isoweekday() % 7) in days_of_week
    # Vixie cron: both restricted means either day; one restricted means that one.
    either_day = not dom.startswith("*") and not dow.startswith("*")
    day_ok = (dom_ok or dow_ok) if either_day else (dom_ok and dow_ok)
    return (
        local.minute in expand(minute, 0, 59, None)
        and local.hour in expand(hour, 0, 23, None)
        and local.month in expand(month, 1, 12, MONTHS)
        and day_ok
    )


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(
    expression=cron_expressions,
    zone=st.sampled_from(ZONES) | st.sampled_from(sorted(zoneinfo.available_timezones())),
    start=starts,
    lateness=st.lists(st.floats(0, 59.9), min_size=TICKS, max_size=TICKS),
)
@example("* * * * 3,7", "UTC", datetime(2026, 12, 1, 23, 58, tzinfo=UTC), [0.5] * TICKS)
@example("* * 1 * 3", "UTC", datetime(2026, 11, 30, 23, 58, tzinfo=UTC), [30.0] * TICKS)
@example("30 2 * * *", "Europe/Berlin", datetime(2026, 3, 27, tzinfo=UTC), [59.0] * TICKS)
@example("30 2 * * *", "Europe/Berlin", datetime(2026, 10, 23, tzinfo=UTC), [1.0] * TICKS)
@example("*/15 1-3 * * *", "Europe/Berlin", datetime(2026, 10, 24, 22, tzinfo=UTC), [5.0] * TICKS)
# Found by this test: croniter reads a one-value range as `*`, and `*/2` in day-of-month as a
# restriction (OR with day-of-week) where cron reads it as a star (AND).
@example("* * * * 1-1", "UTC", datetime(2026, 3, 7, 23, 58, tzinfo=UTC), [0.0] * TICKS)
@example("0 0 */2 * 3", "UTC", datetime(2026, 3, 1, tzinfo=UTC), [0.0] * TICKS)
# ... and a weekday step from 7 (Sunday) as every day, one from Friday as Friday and Saturday
@example("0 0 * * 7/1", "UTC", datetime(2026, 3, 1, tzinfo=UTC), [0.0] * TICKS)
@example("0 0 * * 5/1", "UTC", datetime(2026, 3, 1, tzinfo=UTC), [0.0] * TICKS)
def test_beat_fires_exactly_the_ticks_next_runs_lists(expression, zone, start, lateness):
    try:
        validate_cron_expression(expression)
    except ValidationError:
        assume(False)
    imp = cron_import(expression, zone)
    # What the API shows right after the import is saved at `start`
    listed = imp.next_runs(TICKS, after=start)

    # What beat fires, waking up a random moment (within the grace period) after each due tick
    fired: list[datetime] = []
    due = listed[0]
    for late in lateness:
        now = due + timedelta(seconds=late)
        plan = plan_ticks(imp.schedule, due, now, GRACE, "coalesce")
        assert plan.missed == 0
        for tick, _trigger in plan.runs:
            fired.append(tick)
            # A dispatch at `now` stands for the tick that was due, not for `now`'s minute
            assert imp.tick_for(now) >= tick
        due = plan.next_run_at
        if len(fired) >= TICKS:
            break

    assert fired[:TICKS] == listed[: len(fired[:TICKS])]
    local_zone = zoneinfo.ZoneInfo(zone)
    for tick in listed:
        assert names_the_minute(expression, tick.astimezone(local_zone)) or _spring_gap(
            tick, local_zone
        ), (expression, zone, tick)


def _spring_gap(tick: datetime, zone: zoneinfo.ZoneInfo) -> bool:
    """A tick croniter moved out of a wall time that DST skipped (02:30 on spring-forward day
    runs at 03:00, as Vixie cron does): the local hour before it did not exist."""
    before = (tick - timedelta(minutes=1)).astimezone(zone)
    return before.utcoffset() != tick.astimezone(zone).utcoffset()


def test_a_rule_on_wednesdays_and_sundays_written_with_7_lists_and_fires_both_days():
    imp = cron_import("0 6 * * 3,7", "UTC")

    ticks = imp.next_runs(4, after=datetime(2026, 12, 1, tzinfo=UTC))

    assert [t.strftime("%a %d") for t in ticks] == ["Wed 02", "Sun 06", "Wed 09", "Sun 13"]


def test_day_of_month_and_day_of_week_both_restricted_mean_either_day():
    imp = cron_import("0 0 1 * 3", "UTC")

    ticks = imp.next_runs(4, after=datetime(2026, 11, 30, tzinfo=UTC))

    assert [t.strftime("%a %m-%d") for t in ticks] == [
        "Tue 12-01", "Wed 12-02", "Wed 12-09", "Wed 12-16",
    ]  # fmt: skip
    assert imp.schedule_description == "At 00:00, on day 1 of the month, or on Wednesday (UTC)"


def test_a_day_field_starting_with_a_star_is_described_as_cron_runs_it_on_both():
    # `*/10` and Monday: cron runs on the Mondays that are day 1, 11, 21 or 31, not on either
    imp = cron_import("0 9 */10 * mon", "UTC")

    ticks = imp.next_runs(2, after=datetime(2026, 12, 1, tzinfo=UTC))

    assert [t.strftime("%a %m-%d") for t in ticks] == ["Mon 12-21", "Mon 01-11"]
    assert imp.schedule_description == (
        "At 09:00, on day 1, 11, 21, and 31 of the month, only on Monday (UTC)"
    )


def test_weekday_steps_cron_descriptor_refuses_are_described_by_the_days_they_fire():
    # cron-descriptor raised on these (counting the step past Saturday): the owner's import
    # list, the import and the dashboard answered 500 for an import that fires as listed
    for rule, words, first in [
        ("0 9 * * */7", "At 09:00, only on Sunday (UTC)", "Sun 12-06"),
        ("0 0 * * 3-5/7", "At 00:00, only on Wednesday (UTC)", "Wed 12-02"),
        ("0 9 * * 6/7", "At 09:00, only on Saturday (UTC)", "Sat 12-05"),
    ]:
        imp = cron_import(rule, "UTC")
        assert imp.schedule_description == words, rule
        tick = imp.next_runs(1, after=datetime(2026, 12, 1, tzinfo=UTC))[0]
        assert tick.strftime("%a %m-%d") == first, rule


def test_macros_stand_for_their_five_fields():
    after = datetime(2026, 12, 2, 10, 17, tzinfo=UTC)
    expected = {
        "@hourly": datetime(2026, 12, 2, 11, tzinfo=UTC),
        "@daily": datetime(2026, 12, 3, tzinfo=UTC),
        "@midnight": datetime(2026, 12, 3, tzinfo=UTC),
        "@weekly": datetime(2026, 12, 6, tzinfo=UTC),
        "@monthly": datetime(2027, 1, 1, tzinfo=UTC),
        "@yearly": datetime(2027, 1, 1, tzinfo=UTC),
        "@annually": datetime(2027, 1, 1, tzinfo=UTC),
    }
    for macro, first in expected.items():
        validate_cron_expression(macro)
        assert cron_import(macro, "UTC").next_runs(1, after=after) == [first], macro


def test_steps_that_restart_each_hour_and_sunday_written_7_in_a_range_say_what_fires():
    # "Every 45 minutes" fires at :00 and :45; "Every 61 minutes" hourly; "Sunday through
    # Sunday" (0-7) daily
    for rule, words, fires in [
        ("*/45 * * * *", "At 0 and 45 minutes past the hour (UTC)", ["00:45", "01:00", "01:45"]),
        ("*/61 * * * *", "Every hour (UTC)", ["01:00", "02:00", "03:00"]),
        ("0 3 * * 0-7", "At 03:00 (UTC)", ["Tue 03:00", "Wed 03:00", "Thu 03:00"]),
    ]:
        imp = cron_import(rule, "UTC")
        ticks = imp.next_runs(3, after=datetime(2026, 12, 1, 0, 30, tzinfo=UTC))
        shape = "%a %H:%M" if " " in fires[0] else "%H:%M"
        assert imp.schedule_description == words, rule
        assert [t.strftime(shape) for t in ticks] == fires, rule


@settings(max_examples=300, deadline=None)
@given(expression=cron_expressions)
@example("0 8-18/2,23 * * *")
@example("5 4 * * sun,*")
@example("0 0 * * 4-6/10,*")
def test_every_rule_accepted_is_described_by_cron_descriptor(expression):
    # A rule cron-descriptor raised on (a list holding a step or `*`) made the owner's import
    # list and the dashboard a 500 for an import saved and firing as listed
    from cron_descriptor import get_description

    try:
        validate_cron_expression(expression)
    except ValidationError:
        assume(False)
    imp = cron_import(expression, "UTC")
    get_description(" ".join(imp.schedule._fields_to_describe()))
    assert imp.schedule_description.endswith(" (UTC)")


def test_lists_with_steps_and_steps_that_restart_say_the_values_they_fire_at():
    for rule, words, fires in [
        (
            "0 8-18/2,23 * * *",
            "At 08:00, 10:00, 12:00, 14:00, 16:00, 18:00 and 23:00 (UTC)",
            ["08:00", "10:00", "12:00", "14:00", "16:00", "18:00", "23:00"],
        ),
        ("0/45 * * * *", "At 0 and 45 minutes past the hour (UTC)", ["00:45", "01:00", "01:45"]),
        ("0 0/7 * * *", "At 00:00, 07:00, 14:00 and 21:00 (UTC)", ["07:00", "14:00", "21:00"]),
        ("0 0 */16 * *", "At 00:00, on day 1 and 17 of the month (UTC)", ["12-17", "01-01"]),
        ("0 0 2/40 * *", "At 00:00, on day 2 of the month (UTC)", ["12-02", "01-02"]),
        ("0 0 * * 7/1", "At 00:00, only on Sunday (UTC)", ["Sun 12-06", "Sun 12-13"]),
        (
            "0 0 * * 5/1",
            "At 00:00, only on Sunday, Friday, and Saturday (UTC)",
            ["Fri 12-04", "Sat 12-05", "Sun 12-06", "Fri 12-11"],
        ),
    ]:
        imp = cron_import(rule, "UTC")
        ticks = imp.next_runs(len(fires), after=datetime(2026, 12, 1, 0, 30, tzinfo=UTC))
        shape = "%a %m-%d" if " " in fires[0] else "%m-%d" if "-" in fires[0] else "%H:%M"
        assert imp.schedule_description == words, rule
        assert [t.strftime(shape) for t in ticks] == fires, rule
