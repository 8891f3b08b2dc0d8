"""Putting interval imports in step with a changed MIN_INTERVAL_SECONDS never stands in the way
of beat's dispatch, of reconciliation, or of the catch-up run `coalesce` promises (review).

- An operator's beat entry set to `microseconds` in the Periodic tasks admin made a 0 s
  schedule: the ZeroDivisionError left beat's tick at every start (no import of any owner was
  dispatched) and failed every reconciliation pass. The import's own schedule stands in for an
  entry below a second, and the step runs after the dispatch, its faults logged.
- Beat restarted after downtime with the minimum changed re-planned an overdue `coalesce`
  import as a change (no catch-up), where the same downtime without the change ran one: an
  overdue import is dispatched first, then put in step.
- The late e-mail of a streak begun at a change promised that the catch-up policy decided
  whether the missed ticks still ran; a change runs none.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django_celery_beat.models import IntervalSchedule

from schedules import alerts, reconcile, services
from schedules.models import ScheduledImport
from tests.beat_support import beat_starts
from tests.factories import make_import

pytestmark = pytest.mark.django_db(transaction=True)

SOURCE = "http://127.0.0.1/p.csv"
T0 = datetime(2026, 12, 2, 10, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize("who", ["beat", "reconciliation"])
def test_an_entry_in_microseconds_stops_neither_beat_nor_reconciliation(alice, settings, who):
    settings.MISSED_TICK_GRACE_SECONDS = 5
    settings.MIN_INTERVAL_SECONDS = 60
    with time_machine.travel(T0 - timedelta(seconds=1), tick=False) as clock:
        # Given an import whose entry an operator set to every microsecond, and beat down
        imp = make_import(alice, SOURCE, interval_seconds=60)
        entry = ScheduledImport.objects.get(pk=imp.pk).periodic_task
        entry.interval = IntervalSchedule.objects.create(
            every=1, period=IntervalSchedule.MICROSECONDS
        )
        entry.save()
        clock.move_to(T0 + timedelta(minutes=3))

        # When beat starts again, or reconciliation passes
        if who == "beat":
            beat_starts()
        else:
            reconcile.find_ticks_without_runs(T0 + timedelta(minutes=3), timedelta(seconds=5))

        # Then neither raised, and beat dispatched the import (its catch-up) as its own
        # schedule says
        imp = ScheduledImport.objects.get(pk=imp.pk)
        if who == "beat":
            assert list(imp.runs.values_list("trigger", flat=True)) == ["catchup"]


@pytest.mark.parametrize("minimum_after", [60, 3600], ids=["same-minimum", "minimum-raised"])
def test_a_restart_after_downtime_runs_the_coalesce_catchup(alice, settings, minimum_after):
    settings.MISSED_TICK_GRACE_SECONDS = 5
    settings.MIN_INTERVAL_SECONDS = 60
    with time_machine.travel(T0 - timedelta(seconds=1), tick=False) as clock:
        # Given an import every 10 minutes, coalesce, its next tick 10:00, and beat down
        imp = make_import(alice, SOURCE, interval_seconds=600)
        assert imp.catchup == ScheduledImport.Catchup.COALESCE
        # When beat starts again at 10:35 (with the minimum raised to an hour, or not)
        settings.MIN_INTERVAL_SECONDS = minimum_after
        clock.move_to(T0 + timedelta(minutes=35))
        beat_starts()

        # Then one catch-up run stands for the ticks missed, and the import is late
        imp = ScheduledImport.objects.get(pk=imp.pk)
        assert list(imp.runs.values_list("trigger", flat=True)) == ["catchup"]
        assert imp.missed_ticks >= 1 and imp.late_since is not None


def test_the_late_email_of_a_streak_begun_at_a_change_promises_no_catch_up(alice, settings):
    settings.MISSED_TICK_GRACE_SECONDS = 60
    with time_machine.travel(T0 - timedelta(minutes=30), tick=False) as clock:
        imp = make_import(alice, SOURCE, interval_seconds=3600)
        # Given beat was down from 09:59, and the owner changed the interval at 12:10
        clock.move_to(T0 + timedelta(hours=2, minutes=10))
        services.update_import(ScheduledImport.objects.get(pk=imp.pk), interval_seconds=7200)
        imp = ScheduledImport.objects.get(pk=imp.pk)

        # When the late e-mail is written
        _, message = alerts.late_email(imp)

        # Then it says the ticks counted at the change do not run
        assert imp.missed_ticks == 3 and not imp.runs.exists()
        assert "catch-up policy decides whether the missed ticks still run" not in message
        assert "they were counted when the import's schedule was changed, and do not run" in (
            " ".join(message.split())
        )
