"""A run its owner cancelled while its worker was silent, which the sweep then ended (and told
Flower SUCCESS), ends once in Flower when its attempt, alive after all, stops in the owner's
words (sweep3 hunt). That attempt's task ended SUCCESS again: Flower counted two successes for
one run cancelled (a paused Procfile worker and Flower in the hunt: task-succeeded 2.0).

In process: the sweep's event as tasks.lost_tasks.end_lost_task sends it (recorded), and the
task's end as tasks.tasks.execute_run asks it (told_when_taken_for_lost).
"""

import contextlib

import pytest
from celery import current_app
from celery.exceptions import Ignore
from django.utils import timezone

from schedules import services
from tasks import lost_tasks
from tests.test_an_attempt_taken_for_lost_writes_nothing_and_its_note_stays import silent_attempt

pytestmark = pytest.mark.django_db


class Dispatcher:
    def __init__(self, sent: list[str], refused: bool = False) -> None:
        self.sent, self.refused = sent, refused

    def send(self, type: str, **_fields) -> None:
        if self.refused:
            raise ConnectionRefusedError(111, "Connection refused")
        self.sent.append(type)


def events(monkeypatch, refused: bool = False) -> list[str]:
    """The events the sweep sends Flower (none leave when `refused`: the broker away)."""
    sent: list[str] = []

    @contextlib.contextmanager
    def dispatcher(**_kwargs):
        yield Dispatcher(sent, refused)

    monkeypatch.setattr(current_app.events, "default_dispatcher", dispatcher)
    return sent


def cancelled_and_swept(alice):
    run = silent_attempt(alice, retries=3)
    services.cancel_run(run, alice)
    ended = services.recover_lost_run(run.pk, stale_before=timezone.now())
    assert ended.status == "cancelled"
    lost_tasks.end_lost_task("attempt-1", ended, "sweeper@maintenance")
    return ended


def test_a_cancelled_run_the_sweep_ended_is_not_told_a_second_success(alice, monkeypatch):
    # Given a run alice cancelled while its worker was silent, ended by the sweep, told SUCCESS
    sent = events(monkeypatch)
    run = cancelled_and_swept(alice)
    assert sent == ["task-succeeded"]

    # When its attempt, alive after all, stops in alice's words
    words = services.cancel_requested(run.pk, run.scheduled_import_id, task_id="attempt-1")
    assert words.startswith("cancelled by alice while running")
    told = lost_tasks.told_when_taken_for_lost(
        "attempt-1", run.pk, {"run_id": run.pk, "status": "cancelled", "error": words}
    )

    # Then its task ends without a second event
    assert isinstance(told, Ignore)


def test_a_cancelled_run_the_sweep_could_not_tell_flower_of_ends_in_its_own_words(
    alice, monkeypatch
):
    # Given the same run, the sweep's event refused (the broker away at that moment)
    sent = events(monkeypatch, refused=True)
    run = cancelled_and_swept(alice)
    assert sent == []

    # When its attempt stops in alice's words
    words = services.cancel_requested(run.pk, run.scheduled_import_id, task_id="attempt-1")
    told = lost_tasks.told_when_taken_for_lost(
        "attempt-1", run.pk, {"run_id": run.pk, "status": "cancelled", "error": words}
    )

    # Then its task tells its own end (SUCCESS, with the run's summary), the only one
    assert told is None


def test_a_cancel_its_own_attempt_ended_tells_its_own_end(alice):
    # Given a run alice cancelled whose attempt stops and ends it itself (no sweep)
    run = silent_attempt(alice, retries=3)
    services.cancel_run(run, alice)
    words = services.cancel_requested(run.pk, run.scheduled_import_id, task_id="attempt-1")
    services.finish_run(run, "cancelled", error=words)

    # Then its task tells its end, as any cancelled attempt's does
    told = lost_tasks.told_when_taken_for_lost(
        "attempt-1", run.pk, {"run_id": run.pk, "status": "cancelled", "error": words}
    )
    assert told is None
