"""The sweep notes on a run how the end of its lost attempt's task was told (LOST_TASK_END):
the next sweep tells an end whose event did not leave, and the attempt, alive after all, ends
as told. Since 7ba81ff the sweep's soft time limit, struck in the result backend's wait (a
backend that accepts connections and never answers: 10 s a lost task), ends the pass; but the
note was written after that store, and was skipped with it (reviewD hunt):

- the broker away at that pass: no note, so no sweep ever told the end, and the attempt's task
  of a worker truly dead stayed STARTED in Flower for good;
- a run cancelled and told SUCCESS: no note, so its attempt, alive after all, told a second
  SUCCESS (two ends of one run in Flower).

The limit struck in the event's own send (a broker that accepts and never answers) left no note
either: the end is now noted untold there, and the next sweep tells it.

In process: the soft time limit raised where Celery raises it, in the result backend's wait.
"""

import contextlib

import pytest
from billiard.exceptions import SoftTimeLimitExceeded
from celery import current_app
from celery.exceptions import Ignore
from django.utils import timezone

from schedules import services
from schedules.models import ImportRun
from tasks import lost_tasks
from tests.test_a_cancelled_run_the_sweep_ended_ends_once_in_flower import events
from tests.test_an_attempt_taken_for_lost_writes_nothing_and_its_note_stays import silent_attempt

pytestmark = pytest.mark.django_db


def the_limit_strikes_in_the_store(monkeypatch) -> None:
    def waits_past_the_limit(*_args, **_kwargs):
        raise SoftTimeLimitExceeded()

    monkeypatch.setattr(current_app.backend, "mark_as_failure", waits_past_the_limit)
    monkeypatch.setattr(current_app.backend, "store_result", waits_past_the_limit)


def test_an_end_the_broker_refused_is_told_by_the_next_sweep_after_the_limit_cut_the_store(
    alice, monkeypatch
):
    # Given a lost attempt the sweep ended, the broker away at that pass
    events(monkeypatch, refused=True)
    run = silent_attempt(alice, retries=0)
    resolved = services.recover_lost_run(run.pk, stale_before=timezone.now())
    the_limit_strikes_in_the_store(monkeypatch)

    # When the sweep's time limit strikes as it stores the end
    with pytest.raises(SoftTimeLimitExceeded):
        lost_tasks.end_lost_task("attempt-1", resolved, "sweeper@maintenance")

    # Then the run says its end is still to tell, and the next sweep tells it
    note = ImportRun.objects.get(pk=run.pk).error_details.get(services.LOST_TASK_END)
    assert note == {"task": "attempt-1", "told": False, "by": "sweeper@maintenance"}
    monkeypatch.undo()
    sent = events(monkeypatch)
    assert lost_tasks.tell_untold_ends("sweeper@maintenance") == 1
    assert sent == ["task-failed"]


def test_a_cancelled_runs_attempt_alive_after_all_tells_no_second_success_after_the_limit(
    alice, monkeypatch
):
    # Given a run alice cancelled while its worker was silent, ended by the sweep, told SUCCESS
    sent = events(monkeypatch)
    run = silent_attempt(alice, retries=3)
    services.cancel_run(run, alice)
    resolved = services.recover_lost_run(run.pk, stale_before=timezone.now())
    the_limit_strikes_in_the_store(monkeypatch)

    # When the sweep's time limit strikes as it stores the end
    with pytest.raises(SoftTimeLimitExceeded):
        lost_tasks.end_lost_task("attempt-1", resolved, "sweeper@maintenance")
    assert sent == ["task-succeeded"]

    # Then its attempt, alive after all and stopped in alice's words, ends as the sweep told it
    words = services.cancel_requested(run.pk, run.scheduled_import_id, task_id="attempt-1")
    stopped = {"run_id": run.pk, "status": "cancelled", "error": words}
    told = lost_tasks.told_when_taken_for_lost("attempt-1", run.pk, stopped)
    assert isinstance(told, Ignore)


def test_an_end_whose_event_the_sweeps_limit_cut_is_told_by_the_next_sweep(alice, monkeypatch):
    # Given a lost attempt the sweep ended, the broker silent at that pass
    run = silent_attempt(alice, retries=0)
    resolved = services.recover_lost_run(run.pk, stale_before=timezone.now())

    class Silent:
        def send(self, *_args, **_kwargs):
            raise SoftTimeLimitExceeded()

    @contextlib.contextmanager
    def dispatcher(**_kwargs):
        yield Silent()

    monkeypatch.setattr(current_app.events, "default_dispatcher", dispatcher)

    # When the sweep's time limit strikes as it sends the end
    with pytest.raises(SoftTimeLimitExceeded):
        lost_tasks.end_lost_task("attempt-1", resolved, "sweeper@maintenance")

    # Then the run says its end is still to tell, and the next sweep tells it
    note = ImportRun.objects.get(pk=run.pk).error_details.get(services.LOST_TASK_END)
    assert note == {"task": "attempt-1", "told": False, "by": "sweeper@maintenance"}
    monkeypatch.undo()
    sent = events(monkeypatch)
    assert lost_tasks.tell_untold_ends("sweeper@maintenance") == 1
    assert sent == ["task-failed"]
