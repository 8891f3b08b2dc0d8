"""Two sweeps at once (beat's next pass while a slow one still runs, each on its own worker)
read the same lost attempt's end not told yet (`lost_task_end` told false) and each told it:
two `task-failed` of one task in Flower (reviewC hunt). One of them tells it.

In process: the second sweep runs while the first is about to send its event (at its
dispatcher), as a second worker's sweep would between the first's read and its send.
"""

import contextlib

import pytest
from celery import current_app
from django.utils import timezone

from schedules import services
from tasks import lost_tasks
from tests.test_a_cancelled_run_the_sweep_ended_ends_once_in_flower import Dispatcher, events
from tests.test_an_attempt_taken_for_lost_writes_nothing_and_its_note_stays import silent_attempt

pytestmark = pytest.mark.django_db


def test_two_sweeps_at_once_tell_a_lost_end_the_broker_refused_once(alice, monkeypatch):
    # Given an attempt the sweep failed as lost while the broker was away (its event refused)
    events(monkeypatch, refused=True)
    run = silent_attempt(alice, retries=0)
    ended = services.recover_lost_run(run.pk, stale_before=timezone.now())
    lost_tasks.end_lost_task("attempt-1", ended, "sweeper@one")

    # When two sweeps tell the untold ends at once, the second between the first's read and send
    sent: list[str] = []
    second: list[int] = []

    @contextlib.contextmanager
    def dispatcher(**kwargs):
        if kwargs.get("hostname") == "sweeper@one" and not second:
            second.append(lost_tasks.tell_untold_ends("sweeper@two"))
        yield Dispatcher(sent, False)

    monkeypatch.setattr(current_app.events, "default_dispatcher", dispatcher)
    first = lost_tasks.tell_untold_ends("sweeper@one")

    # Then the attempt's failure is told once, by one of them
    assert sent == ["task-failed"]
    assert first + second[0] == 1
