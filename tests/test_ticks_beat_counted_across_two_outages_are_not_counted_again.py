"""Ticks beat counted as missed across two outages are not counted again by reconciliation.

Regression (scheduler hunt): beat down across 10:00-10:02 (three ticks counted missed), back
(10:03 on time, the late streak over), down again across 10:04-10:06 and back (10:07 on time):
reconciliation's next pass, later than both (it runs on a worker, once a minute at best), found
10:00-10:02 without a run and counted them a second time, `missed_ticks` 9 for 6, and an import
on time again turned late (its owner told "late" of ticks long handled, /health degraded). Beat
kept only the last range it counted, which the second outage overwrote.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from common import database_clock
from schedules import dispatch, reconcile
from schedules.models import ScheduledImport
from tests.factories import make_import

pytestmark = pytest.mark.django_db(transaction=True)

SOURCE = "http://127.0.0.1/p.csv"
T0 = datetime(2026, 12, 2, 10, 0, 0, tzinfo=UTC)


def beat_looks() -> dispatch.DispatchResult:
    return dispatch.dispatch_due(publish=lambda runs: None)


@pytest.mark.parametrize("catchup", ["skip", "coalesce"])
def test_ticks_counted_by_beat_across_two_outages_are_not_counted_again(alice, settings, catchup):
    settings.MISSED_TICK_GRACE_SECONDS = 5
    with time_machine.travel(T0 - timedelta(seconds=1), tick=False) as clock:
        imp = make_import(alice, SOURCE, interval_seconds=60, catchup=catchup)
        # Given beat was down across 10:00, 10:01 and 10:02, and came back
        clock.move_to(T0 + timedelta(minutes=2, seconds=30))
        assert beat_looks().missed == 3
        clock.move_to(T0 + timedelta(minutes=3, seconds=1))
        beat_looks()  # 10:03 on time
        # ... and was down again across 10:04, 10:05 and 10:06, and came back
        clock.move_to(T0 + timedelta(minutes=6, seconds=30))
        assert beat_looks().missed == 3
        clock.move_to(T0 + timedelta(minutes=7, seconds=1))
        beat_looks()  # 10:07 on time: the import is on time again
        imp.refresh_from_db()
        assert imp.missed_ticks == 6 and imp.late_since is None

        # When reconciliation compares the ticks with the runs (its look for lost messages
        # left aside: no broker holds this test's messages)
        found = reconcile.find_ticks_without_runs(database_clock.now(), timedelta(seconds=5))

        # Then it finds no tick beat has not counted, and the import stays on time
        imp = ScheduledImport.objects.get(pk=imp.pk)
        assert (found, imp.missed_ticks, imp.late_since) == (0, 6, None)
