"""A cron rule that fires once in decades is taken, lists its next five runs and fires them.

Regression (ticks hunt): `0 0 29 2 */7` (midnight on 29 February when it is a Sunday: cron ANDs
the day fields, the weekday's starting with `*`) fires in 2032, 2060, 2088, 2128 and 2156. The
guard against rules whose every time the clocks skip gave up a walk 100 years after its start,
however many ticks it had found: the five ticks listed reach 2156, so the save answered 500
after the import was kept, and so did every page that listed its next runs.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from schedules.models import ScheduledImport
from schedules.ticks import NeverFires, Schedule
from tests.api_support import API, client_for, import_body

pytestmark = pytest.mark.django_db

SUNDAY_29_FEBRUARY = "0 0 29 2 */7"
TICKS = [datetime(year, 2, 29, tzinfo=UTC) for year in (2032, 2060, 2088, 2128, 2156)]


def test_a_rule_that_fires_once_in_decades_is_taken_with_its_next_five_runs(alice):
    client = client_for(alice)
    client.raise_request_exception = False

    answer = client.post(
        f"{API}/imports",
        import_body(cron_expression=SUNDAY_29_FEBRUARY, timezone="UTC"),
        format="json",
    )

    assert answer.status_code == 201, (answer.status_code, answer.content[:300])
    listed = answer.json()["next_runs"]
    assert [datetime.fromisoformat(tick) for tick in listed] == TICKS, listed
    imp = ScheduledImport.objects.get()
    assert imp.next_run_at == TICKS[0]
    shown = client.get(f"{API}/imports/{imp.pk}")
    assert shown.status_code == 200, (shown.status_code, shown.content[:300])


def test_its_ticks_are_walked_forward_and_back_across_the_century():
    schedule = Schedule(cron_expression=SUNDAY_29_FEBRUARY)

    assert schedule.ticks_between(datetime(2026, 12, 7, tzinfo=UTC), TICKS[-1], 10) == TICKS
    # What beat does: each next tick from the last one fired.
    assert [schedule.next_after(tick) for tick in TICKS[:-1]] == TICKS[1:]
    # What a late dispatch records, walking back 40 years (2088 to 2128).
    assert schedule.tick_at_or_before(datetime(2128, 2, 28, tzinfo=UTC)) == TICKS[2]


def test_a_rule_whose_every_time_the_clocks_skip_still_never_fires():
    schedule = Schedule(cron_expression="*/30 2 8-14 3 */7", timezone="America/New_York")

    with pytest.raises(NeverFires):
        schedule.next_after(datetime(2026, 12, 7, tzinfo=UTC))
