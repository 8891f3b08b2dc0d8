"""A lost attempt's end the sweep could not tell (the broker away: `lost_task_end` told false)
is told by the attempt itself when, alive after all, it stops (a failure its worker sends, or
its own SUCCESS); the next sweep, which tells each untold end (tasks.lost_tasks.
tell_untold_ends), told it a second time: two `task-failed` (or two `task-succeeded`) for one
attempt in Flower, as the note still said nobody had told it (reviewC hunt).

In process: the sweep's events as tasks.lost_tasks.end_lost_task sends them (refused, then
taken), the attempt's end as tasks.tasks.execute_run asks it (told_when_taken_for_lost: a
RunFailed its worker sends, None its task's own SUCCESS).
"""

import pytest
from django.utils import timezone

from schedules import services
from tasks import lost_tasks, maintenance
from tasks.errors import RunFailed
from tests.test_a_cancelled_run_the_sweep_ended_ends_once_in_flower import events
from tests.test_an_attempt_taken_for_lost_writes_nothing_and_its_note_stays import silent_attempt

pytestmark = pytest.mark.django_db

SWEEPER = "sweeper@maintenance"


def test_a_lost_run_failed_whose_attempt_told_its_failure_is_not_failed_again_by_the_sweep(
    alice, monkeypatch
):
    # Given an attempt the sweep failed as lost while the broker was away (its event refused)
    events(monkeypatch, refused=True)
    run = silent_attempt(alice, retries=0)
    ended = services.recover_lost_run(run.pk, stale_before=timezone.now())
    assert ended.status == "failed"
    lost_tasks.end_lost_task("attempt-1", ended, SWEEPER)

    # ... whose attempt, alive after all, stopped and told its failure itself (its worker)
    why = {"run_id": run.pk, "status": "failed", "error": services.ENDED_WHILE_RUNNING}
    told = lost_tasks.told_when_taken_for_lost("attempt-1", run.pk, why)
    assert isinstance(told, RunFailed) and not getattr(told, "told", False)

    # When the next sweep comes, the broker back
    sent = events(monkeypatch)
    maintenance.sweep_runs(reporter=SWEEPER)

    # Then it tells nothing more: the attempt's task failed once
    assert sent == []


def test_a_lost_run_sent_again_whose_attempt_told_its_failure_is_not_failed_again_by_the_sweep(
    alice, monkeypatch
):
    # Given an attempt the sweep sent again while the broker was away (its event refused)
    events(monkeypatch, refused=True)
    run = silent_attempt(alice, retries=3)
    resent = services.recover_lost_run(run.pk, stale_before=timezone.now())
    assert resent.status == "retrying"
    lost_tasks.end_lost_task("attempt-1", resent, SWEEPER)

    # ... whose first attempt, alive after all, stopped and told its failure itself
    why = {"run_id": run.pk, "status": "running", "error": services.TAKEN_OVER_WHILE_RUNNING}
    told = lost_tasks.told_when_taken_for_lost("attempt-1", run.pk, why)
    assert isinstance(told, RunFailed) and not getattr(told, "told", False)

    # When the next sweep comes, the broker back
    sent = events(monkeypatch)
    maintenance.sweep_runs(reporter=SWEEPER)

    # Then it tells nothing more of that attempt
    assert sent == []
