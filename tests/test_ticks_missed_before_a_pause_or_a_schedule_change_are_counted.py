"""Ticks an active import missed (beat down or stalled) before its owner paused, resumed or
rescheduled it are counted missed at the change: SPEC 4, a tick with no run after the grace
period is a missed tick. Rescheduled, the import is late, its owner told once; paused, it is
late no more (a paused import is not late), the ticks counted all the same.

Regression (interval hunt, finding 3): beat down across 10:00, 11:00 and 12:00 of an hourly
import; a pause and resume, or an edit of its interval, at 12:10 started its ticks afresh and
dropped those three: `missed_ticks` stayed 0, the import was never late and nobody was told,
where the API had said `late: true` a moment before. No catch-up runs for them: the schedule as
changed decides what runs next.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from common import database_clock
from schedules import dispatch, reconcile, services, statuses
from schedules.models import ImportRun, NotificationDelivery, ScheduledImport
from tests.factories import make_import

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def a_worker_takes_the_late_notifications(monkeypatch):
    """Beat's one message of late streaks (importbeat.notify_late_imports), taken at once."""
    from celery import current_app

    from tasks.tasks import notify_late_imports

    send = current_app.send_task

    def taken(name, *args, **kwargs):
        if name != dispatch.LATE_TASK:
            return send(name, *args, **kwargs)
        return notify_late_imports(*kwargs["args"])

    monkeypatch.setattr(current_app, "send_task", taken)


SOURCE = "http://127.0.0.1/p.csv"
T0 = datetime(2026, 12, 2, 10, 0, 0, tzinfo=UTC)
GRACE = timedelta(seconds=60)


def read(imp: ScheduledImport) -> ScheduledImport:
    return ScheduledImport.objects.get(pk=imp.pk)


def pause_and_resume(imp: ScheduledImport, clock) -> None:
    services.pause_import(read(imp))
    clock.shift(timedelta(minutes=1))
    services.resume_import(read(imp))


def pause_and_resume_many(imp: ScheduledImport, clock) -> None:
    statuses.change_statuses([imp.pk], "paused", from_statuses=["active"])
    clock.shift(timedelta(minutes=1))
    statuses.change_statuses([imp.pk], "active", from_statuses=["paused"])


def edit_interval(imp: ScheduledImport, clock) -> None:
    services.update_import(read(imp), interval_seconds=7200)


@pytest.mark.parametrize(
    ("change", "late"),
    [(pause_and_resume, False), (pause_and_resume_many, False), (edit_interval, True)],
)
def test_ticks_missed_while_active_are_counted_at_a_change(alice, settings, change, late):
    settings.MISSED_TICK_GRACE_SECONDS = 60
    with time_machine.travel(T0 - timedelta(minutes=30), tick=False) as clock:
        imp = make_import(alice, SOURCE, interval_seconds=3600)
        # Given beat was down from 09:59: 10:00, 11:00 and 12:00 passed without a run
        clock.move_to(T0 + timedelta(hours=2, minutes=10))
        assert read(imp).is_late()

        # When its owner changes it at 12:10, and beat and reconciliation come back later
        change(imp, clock)
        clock.move_to(T0 + timedelta(hours=2, minutes=15))
        dispatch.dispatch_due(publish=lambda runs: None)
        found = reconcile.find_ticks_without_runs(database_clock.now(), GRACE)

        # Then the three ticks are counted once; rescheduled, the import is late since the
        # change and its owner told once (paused, its streak ended there, nobody told); no run
        # stands for them (the changed schedule decides what runs)
        imp = read(imp)
        told = NotificationDelivery.objects.filter(scheduled_import=imp, event="late").count()
        runs = ImportRun.objects.filter(scheduled_import=imp).count()
        assert (imp.missed_ticks, found, runs) == (3, 0, 0)
        if late:
            assert (imp.missed_while_late, told) == (3, 1)
            assert imp.late_since == T0 + timedelta(hours=2, minutes=10)
        else:
            assert (imp.missed_while_late, told, imp.late_since) == (0, 0, None)

        # ... and the streak ends at its next tick fired on time, nothing counted again
        clock.move_to(imp.next_run_at + timedelta(seconds=1))
        dispatch.dispatch_due(publish=lambda runs: None)
        reconcile.find_ticks_without_runs(database_clock.now(), GRACE)
        imp = read(imp)
        assert (imp.missed_ticks, imp.late_since) == (3, None)


def test_a_pause_ends_a_streak_begun_during_the_outage_counting_its_ticks(alice, settings):
    from schedules import overdue

    settings.MISSED_TICK_GRACE_SECONDS = 60
    with time_machine.travel(T0 - timedelta(minutes=30), tick=False) as clock:
        imp = make_import(alice, SOURCE, interval_seconds=3600)
        # Given no beat ran, and a worker began the import's late streak at 10:05 (told)
        clock.move_to(T0 + timedelta(minutes=5))
        overdue.start_late_streaks()
        # When its owner pauses it at 11:30
        clock.move_to(T0 + timedelta(hours=1, minutes=30))
        services.pause_import(read(imp))
        # Then its two ticks are counted, the streak ends (a paused import is not late), and
        # its owner was told once in all
        imp = read(imp)
        told = NotificationDelivery.objects.filter(scheduled_import=imp, event="late").count()
        assert (imp.missed_ticks, imp.missed_while_late, told) == (2, 0, 1)
        assert (imp.late_since, imp.is_late()) == (None, False)
