"""A MIN_INTERVAL_SECONDS changed since an interval import's ticks were planned starts its ticks
afresh, as a schedule change does: no tick before the first listed one is counted missed.

Regression (interval hunt, finding 1): an import asks for every minute; the operator raised the
minimum to an hour (it fired hourly), then lowered it again. Its `next_run_at` stayed on the
hourly tick beat had planned, listed first; reconciliation read the ticks before it with the
schedule of now (every minute), found none with a run, counted them missed, made the import late
(its owner e-mailed, /health degraded) and ran catch-ups nobody listed, one a minute. Beat's
entry still said the interval it was planned with ("every hour") until the import was saved.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from common import database_clock
from schedules import dispatch, reconcile
from schedules.models import ScheduledImport
from tests.beat_support import beat_starts
from tests.factories import make_import

pytestmark = pytest.mark.django_db(transaction=True)

SOURCE = "http://127.0.0.1/p.csv"
T0 = datetime(2026, 12, 2, 10, 0, 0, tzinfo=UTC)
GRACE = timedelta(seconds=5)


def beat_looks() -> dispatch.DispatchResult:
    return dispatch.dispatch_due(publish=lambda runs: None)


def reconcile_looks() -> int:
    return reconcile.find_ticks_without_runs(database_clock.now(), GRACE)


def read(imp: ScheduledImport) -> ScheduledImport:
    return ScheduledImport.objects.get(pk=imp.pk)


def entry_every(imp: ScheduledImport) -> int:
    return (
        ScheduledImport.objects.select_related("periodic_task__interval")
        .get(pk=imp.pk)
        .periodic_task.interval.every
    )


def test_a_lowered_minimum_counts_no_tick_before_the_first_listed_missed(alice, settings):
    settings.MISSED_TICK_GRACE_SECONDS = 5
    settings.MIN_INTERVAL_SECONDS = 60
    with time_machine.travel(T0 - timedelta(seconds=1), tick=False) as clock:
        imp = make_import(alice, SOURCE, interval_seconds=60)
        # Given the operator raised the shortest interval to an hour: 10:00 fired, 11:00 next
        settings.MIN_INTERVAL_SECONDS = 3600
        clock.move_to(T0 + timedelta(seconds=1))
        beat_looks()
        clock.move_to(T0 + timedelta(minutes=5))
        reconcile_looks()
        # ... and lowered it back to a minute at 10:20
        settings.MIN_INTERVAL_SECONDS = 60

        # When reconciliation looks at 10:30, and beat after it
        clock.move_to(T0 + timedelta(minutes=30))
        found = reconcile_looks()
        listed = ScheduledImport.objects.get(pk=imp.pk).next_runs(2)
        clock.move_to(T0 + timedelta(minutes=31, seconds=1))
        beat_looks()

        # Then no tick is counted missed, the import is not late, no catch-up ran, and its
        # ticks start afresh from 10:30: what is listed is what fires
        imp = ScheduledImport.objects.get(pk=imp.pk)
        runs = list(imp.runs.order_by("scheduled_for").values_list("trigger", "scheduled_for"))
        print(f"found={found} missed_ticks={imp.missed_ticks} late_since={imp.late_since}")
        print("listed at 10:30:", [f"{t:%H:%M}" for t in listed], "runs:", runs)
        assert (found, imp.missed_ticks, imp.late_since) == (0, 0, None)
        assert listed == [T0 + timedelta(minutes=31), T0 + timedelta(minutes=32)]
        assert runs == [("schedule", T0), ("schedule", T0 + timedelta(minutes=31))]
        assert entry_every(imp) == 60


def test_beat_starting_with_a_lowered_minimum_fires_its_ticks_not_the_old_one(alice, settings):
    settings.MISSED_TICK_GRACE_SECONDS = 5
    settings.MIN_INTERVAL_SECONDS = 3600
    with time_machine.travel(T0 + timedelta(minutes=20), tick=False):
        # Given an import asking for every minute, planned hourly (the minimum an hour, its
        # entry "every hour"): its next tick 11:00
        imp = make_import(alice, SOURCE, interval_seconds=3600)
        ScheduledImport.objects.filter(pk=imp.pk).update(interval_seconds=60)
        assert read(imp).next_run_at == T0 + timedelta(hours=1)
        # When beat starts again with the minimum lowered to a minute (its first loop)
        settings.MIN_INTERVAL_SECONDS = 60
        beat_starts()
        # Then its next tick is the next minute's, and its entry says every minute
        imp = ScheduledImport.objects.get(pk=imp.pk)
        assert imp.next_run_at == T0 + timedelta(minutes=21)
        assert entry_every(imp) == 60
