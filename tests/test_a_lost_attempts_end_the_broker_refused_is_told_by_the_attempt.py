"""The end of an attempt the sweep took for lost, which the sweep could not tell Flower (the
broker away at that moment), is told by the attempt itself when, alive after all, it stops
(sweep3 hunt). It was not: the attempt's task ended "as the sweep told it", telling nothing,
and stayed STARTED in Flower for good beside a run the log says failed (a paused Procfile
worker and Flower in the hunt: STARTED, no final event counted).

In process: the sweep's event as tasks.lost_tasks.end_lost_task sends it (refused), and the
task's end as tasks.tasks.execute_run asks it (told_when_taken_for_lost); a failure not told
already is sent by its worker (project.task_class: `told`).
"""

import pytest
from django.utils import timezone

from schedules import services
from schedules.models import ImportRun
from tasks import lost_tasks
from tasks.errors import RunFailed
from tests.test_a_cancelled_run_the_sweep_ended_ends_once_in_flower import events
from tests.test_an_attempt_taken_for_lost_writes_nothing_and_its_note_stays import silent_attempt

pytestmark = pytest.mark.django_db


def stopped(run: ImportRun, why: str) -> dict:
    return {"run_id": run.pk, "status": "cancelled", "error": why}


@pytest.mark.parametrize(("refused", "told_already"), [(True, False), (False, True)])
def test_a_run_failed_as_lost_fails_its_task_once_whoever_tells_it(
    alice, monkeypatch, refused, told_already
):
    # Given an attempt the sweep failed as lost, its event refused by the broker (or not)
    sent = events(monkeypatch, refused=refused)
    run = silent_attempt(alice, retries=0)
    ended = services.recover_lost_run(run.pk, stale_before=timezone.now())
    lost_tasks.end_lost_task("attempt-1", ended, "sweeper@maintenance")
    assert sent == ([] if refused else ["task-failed"])

    # When its attempt, alive after all, stops
    told = lost_tasks.told_when_taken_for_lost(
        "attempt-1", run.pk, stopped(run, services.ENDED_WHILE_RUNNING)
    )

    # Then its task fails in the run's words, told by its worker only when the sweep could not
    assert isinstance(told, RunFailed)
    assert str(told).startswith(f"run {run.pk} failed: the worker running attempt 1 was lost")
    assert getattr(told, "told", False) is told_already


def test_a_run_sent_again_whose_end_was_refused_fails_its_first_task_in_its_words(
    alice, monkeypatch
):
    # Given an attempt the sweep sent again, its event refused by the broker
    events(monkeypatch, refused=True)
    run = silent_attempt(alice, retries=3)
    resent = services.recover_lost_run(run.pk, stale_before=timezone.now())
    assert resent.status == "retrying"
    lost_tasks.end_lost_task("attempt-1", resent, "sweeper@maintenance")

    # When that attempt, alive after all, finds its run taken over
    told = lost_tasks.told_when_taken_for_lost(
        "attempt-1", run.pk, stopped(run, services.TAKEN_OVER_WHILE_RUNNING)
    )

    # Then its worker tells its failure
    assert isinstance(told, RunFailed)
    assert "sent again by the sweep" in str(told)
    assert getattr(told, "told", False) is False


def test_a_note_of_the_refused_end_stays_through_the_next_attempts_writes(alice, monkeypatch):
    # Given a run sent again whose first task's end was refused
    events(monkeypatch, refused=True)
    run = silent_attempt(alice, retries=3)
    resent = services.recover_lost_run(run.pk, stale_before=timezone.now())
    lost_tasks.end_lost_task("attempt-1", resent, "sweeper@maintenance")

    # When its next attempt, which read the run before the note (claimed), fails and retries
    ImportRun.objects.filter(pk=run.pk).update(status="running", attempts=2)
    held = services.load_run(run.pk)
    del held.error_details[services.LOST_TASK_END]
    assert services.mark_retrying(held, "the server answered HTTP 503", 30.0)

    # Then the first task still finds that its end was not told
    told = lost_tasks.told_when_taken_for_lost(
        "attempt-1", run.pk, stopped(run, services.TAKEN_OVER_WHILE_RUNNING)
    )
    assert getattr(told, "told", False) is False
