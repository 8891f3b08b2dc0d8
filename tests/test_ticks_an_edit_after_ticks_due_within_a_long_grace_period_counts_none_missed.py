"""An edit of an import's schedule while several of its ticks were due and younger than the
grace period (MISSED_TICK_GRACE_SECONDS longer than the schedule's period: an every-minute or
interval schedule under a grace period of five minutes, beat behind by a couple of minutes)
counted every one of those ticks missed: none ran, the import turned late and its owner was
e-mailed that it had missed them, though beat would have run them on time had it got to them
first, and the user had only edited the schedule (ScheduledImport.sync_periodic_task,
tick_kept_at_change).

Now the newest tick due at the edit is kept, within the grace period: the edit's answer lists
it first and beat runs it on time, once; its run takes the file after every tick due then, as
beat's one run for ticks that come due together. Nothing is counted missed and nobody is told.
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

T0 = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
EDIT_AT = T0 + timedelta(minutes=2, seconds=30)  # 12:00, 12:01 and 12:02 due, none dispatched
SCHEDULES = {
    "every minute to every five": (
        {"schedule_type": "cron", "cron_expression": "* * * * *", "interval_seconds": None},
        {"cron_expression": "*/5 * * * *"},
        T0 + 5 * MINUTE,
    ),
    "60 s interval to 120 s": (
        {"schedule_type": "interval", "interval_seconds": 60, "cron_expression": ""},
        {"interval_seconds": 120},
        T0 + 4 * MINUTE,
    ),
}


@pytest.fixture
def told(monkeypatch) -> list[int]:
    """The imports whose owners are told of a late streak (beat's message to a worker)."""
    ids: list[int] = []
    monkeypatch.setattr(dispatch, "_tell_owners_late", ids.extend)
    return ids


def beat_pass() -> None:
    dispatch.dispatch_due(publish=lambda runs: None)


def runs_of(imp: ScheduledImport) -> list[tuple[datetime, str]]:
    return list(
        ImportRun.objects.filter(scheduled_import=imp)
        .order_by("scheduled_for")
        .values_list("scheduled_for", "trigger")
    )


@pytest.mark.parametrize("before, edit, changed_next", SCHEDULES.values(), ids=SCHEDULES.keys())
def test_an_edit_after_ticks_due_within_the_grace_period_counts_none_missed(
    alice, settings, sent, told, before, edit, changed_next
):
    # Given an import made at 11:59:58, a grace period of five minutes, and beat behind
    # since: 12:00, 12:01 and 12:02 are due, each on time still.
    settings.MISSED_TICK_GRACE_SECONDS = 300
    with time_machine.travel(T0 - timedelta(seconds=2), tick=False) as clock:
        imp = make_import(alice, SOURCE, timezone="UTC", **before)
        assert imp.next_run_at == T0
        clock.move_to(EDIT_AT)

        # When its owner edits the schedule at 12:02:30.
        answer = services.update_import(ScheduledImport.objects.get(pk=imp.pk), **edit)

        # Then nothing is counted missed, the import is not late, nobody is told;
        assert (answer.missed_ticks, answer.late_since, answer.is_late()) == (0, None, False)
        # the newest tick due is listed first, then the changed schedule's after the edit;
        assert answer.next_runs(2) == [T0 + 2 * MINUTE, changed_next]
        # and beat runs it on time, once, then the changed schedule's next tick.
        clock.move_to(EDIT_AT + timedelta(seconds=1))
        beat_pass()
        beat_pass()
        after = ScheduledImport.objects.get(pk=imp.pk)
        assert runs_of(imp)[-1] == (T0 + 2 * MINUTE, ImportRun.Trigger.SCHEDULE)
        assert [tick for tick, _ in runs_of(imp)].count(T0 + 2 * MINUTE) == 1
        assert after.next_run_at == changed_next
        assert (after.missed_ticks, after.is_late()) == (0, False)
    assert told == []
