"""A real beat fires cron rules on exactly the minutes the API lists: a day-of-week written as 7
(Sunday, beside today's weekday) and a rule restricting both day-of-month and day-of-week
(standard cron runs on either day; Celery's crontab would run only when both match, so never
today). Both rules are built around today so that they are due within the minute."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from schedules.models import ImportRun, ScheduledImport
from tests.conftest import wait_for
from tests.factories import PRODUCTS_CSV, make_import
from tests.reliability import FAST

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]

# The first listed minute: a second one waited a minute more on real time, while every next
# tick's agreement with the list is the in-process tests' (one tick function shows and fires:
# tests/test_ticks_shown_are_ticks_fired.py).
TICKS = 1
# The tick listed first is the minute's own, as for an import saved a moment before the minute
# began: beat fires it as it starts, where waiting for the next minute took 30 s on average.
# Past this second of the minute, the test waits for the next one, so that beat dispatches the
# tick within the grace period (a later dispatch would be a missed tick's catch-up run).
LATEST_SECOND = 30


def rules_for_today() -> tuple[str, str]:
    # Wait out midnight: the rules name today, and must stay due for the next few minutes.
    while (datetime.now(UTC) + timedelta(minutes=4)).date() != datetime.now(UTC).date():
        time.sleep(5)
    if datetime.now(UTC).second >= LATEST_SECOND:
        time.sleep(60.5 - datetime.now(UTC).second - datetime.now(UTC).microsecond / 1e6)
    today = datetime.now(UTC)
    weekday = today.isoweekday() % 7  # cron: Sunday is 0
    with_seven = "* * * * 7" if weekday == 0 else f"* * * * {weekday},7"
    other_day = today.day % 28 + 1
    either_day = f"* * {other_day} * {weekday}"
    return with_seven, either_day


def test_beat_fires_a_sunday_written_7_and_an_either_day_rule_on_the_listed_minutes(
    alice, csv_server, processes
):
    url = csv_server.serve("/p.csv", PRODUCTS_CSV)
    with_seven, either_day = rules_for_today()
    imports = [
        make_import(
            alice, url, name=rule, dataset=f"d{i}", schedule_type="cron",
            cron_expression=rule, interval_seconds=None,
        )
        for i, rule in enumerate((with_seven, either_day))
    ]  # fmt: skip
    minute = datetime.now(UTC).replace(second=0, microsecond=0)
    ScheduledImport.objects.filter(pk__in=[imp.pk for imp in imports]).update(next_run_at=minute)
    listed = {}
    for imp in imports:
        imp.refresh_from_db()
        listed[imp.pk] = imp.next_runs(TICKS)
        assert listed[imp.pk][0] == minute == imp.tick_for(minute), imp.cron_expression
    # The default grace period (a minute): FAST's 3 s would make the minute's tick a missed one.
    fast = {name: value for name, value in FAST.items() if name != "MISSED_TICK_GRACE_SECONDS"}
    processes.start("worker", **fast)
    processes.start("beat", **fast)

    last = max(ticks[-1] for ticks in listed.values())
    wait_for(
        lambda: ImportRun.objects.filter(scheduled_for=last).count() == len(imports),
        60,
        what="the listed ticks\n" + processes.logs(),
    )
    time.sleep(1)

    for imp in imports:
        fired = list(
            ImportRun.objects.filter(scheduled_import=imp, scheduled_for__lte=last)
            .order_by("scheduled_for")
            .values_list("scheduled_for", "trigger")
        )
        print(f"\n[figures] {imp.cron_expression!r}: listed={listed[imp.pk]} fired={fired}")
        assert [tick for tick, _trigger in fired] == listed[imp.pk], imp.cron_expression
        assert {trigger for _tick, trigger in fired} == {"schedule"}
