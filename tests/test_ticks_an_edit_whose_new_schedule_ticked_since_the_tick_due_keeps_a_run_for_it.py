"""An edit of an import's schedule a few seconds after one of its ticks fell due, before beat
dispatched it, when the changed schedule has a tick of its own between the two (an import
every 90 s whose 12:01:30 tick waits, changed at 12:02:10 to every minute: 12:02:00), counted
the tick due missed: no run, the import late and its owner e-mailed that it missed a tick,
though nothing was missed (the user edited the schedule, within the grace period).

Now the edit keeps the newest tick due then, of either schedule, within the grace period
(12:02:00 here): the edit's answer lists it first, beat runs it on time, once, its run taking
the file after the tick that was due, and the changed schedule's ticks follow after the edit.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from schedules import dispatch, services
from schedules.models import ImportRun, ScheduledImport
from tests.api_support import SOURCE
from tests.factories import make_import

pytestmark = pytest.mark.django_db(transaction=True)

DUE = datetime(2026, 12, 2, 12, 1, 30, tzinfo=UTC)  # a tick of every 90 s (epoch multiples)
NEW_TICK = datetime(2026, 12, 2, 12, 2, tzinfo=UTC)  # the changed schedule's, before the edit
EDIT_AT = datetime(2026, 12, 2, 12, 2, 10, tzinfo=UTC)
EDITS = {
    "to a cron rule": {"schedule_type": "cron", "cron_expression": "* * * * *"},
    "to another interval": {"interval_seconds": 60},
}


@pytest.fixture
def told(monkeypatch) -> list[int]:
    """The imports whose owners are told of a late streak (beat's message to a worker)."""
    ids: list[int] = []
    monkeypatch.setattr(dispatch, "_tell_owners_late", ids.extend)
    return ids


def runs_of(imp: ScheduledImport) -> list[tuple[datetime, str]]:
    return list(
        ImportRun.objects.filter(scheduled_import=imp)
        .order_by("scheduled_for")
        .values_list("scheduled_for", "trigger")
    )


@pytest.mark.parametrize("edit", EDITS.values(), ids=EDITS.keys())
def test_an_edit_whose_new_schedule_ticked_since_the_tick_due_keeps_a_run_for_it(
    alice, settings, sent, told, edit
):
    # Given an import every 90 s, made at 12:01:20, its 12:01:30 tick due and not dispatched,
    # under the default grace period of 60 s.
    settings.MISSED_TICK_GRACE_SECONDS = 60
    with time_machine.travel(DUE - timedelta(seconds=10), tick=False) as clock:
        imp = make_import(alice, SOURCE, interval_seconds=90)
        assert imp.next_run_at == DUE
        clock.move_to(EDIT_AT)

        # When its owner changes it to every minute at 12:02:10.
        answer = services.update_import(ScheduledImport.objects.get(pk=imp.pk), **edit)

        # Then nothing is counted missed, the import is not late, nobody is told;
        assert (answer.missed_ticks, answer.late_since, answer.is_late()) == (0, None, False)
        # 12:02:00 is listed first, then the changed schedule's ticks after the edit;
        assert answer.next_runs(3) == [NEW_TICK + timedelta(minutes=n) for n in range(3)]
        # and beat runs it on time, once, then 12:03.
        clock.move_to(EDIT_AT + timedelta(seconds=1))
        dispatch.dispatch_due(publish=lambda runs: None)
        dispatch.dispatch_due(publish=lambda runs: None)
        assert runs_of(imp) == [(NEW_TICK, ImportRun.Trigger.SCHEDULE)]
        after = ScheduledImport.objects.get(pk=imp.pk)
        assert after.next_run_at == NEW_TICK + timedelta(minutes=1)
        assert (after.missed_ticks, after.is_late()) == (0, False)
    assert told == []
