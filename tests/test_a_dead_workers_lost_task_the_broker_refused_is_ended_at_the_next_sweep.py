"""A lost attempt's task whose end the sweep could not tell Flower (the broker away at that
pass: the run noted `lost_task_end` told false) is told at a later pass, once. When the worker
was truly dead (SIGKILL), no attempt came back to tell it, and its task stayed STARTED in
Flower for good (sweep4 hunt: a killed Procfile worker, the sweep's events refused, Flower
said STARTED after every later pass).

In process: the sweep as a worker's sweep task runs it (`reporter`), its events recorded, or
refused as a broker away refuses them (tasks.lost_tasks.end_lost_task's dispatcher).
"""

from datetime import timedelta

import pytest
from django.utils import timezone

from schedules import services
from schedules.models import ImportRun
from tasks import maintenance
from tests.test_a_cancelled_run_the_sweep_ended_ends_once_in_flower import events
from tests.test_an_attempt_taken_for_lost_writes_nothing_and_its_note_stays import silent_attempt

pytestmark = pytest.mark.django_db

SWEEPER = "sweeper@maintenance"
# Silent past two lease periods (RUN_LEASE_SECONDS): the sweep takes its worker for lost.
SILENT_SINCE = timezone.now() - timedelta(minutes=10)


def dead_attempt(owner, *, retries: int) -> ImportRun:
    """A running attempt (task attempt-1) of a worker killed a minute ago."""
    run = silent_attempt(owner, retries=retries)
    ImportRun.objects.filter(pk=run.pk).update(worker="celery@dead", heartbeat_at=SILENT_SINCE)
    return run


def told(run: ImportRun) -> bool | None:
    return services.lost_task_end_told(ImportRun.objects.get(pk=run.pk), "attempt-1")


def test_a_lost_run_failed_while_the_broker_was_away_is_told_failed_at_the_next_sweep(
    alice, monkeypatch
):
    # Given a dead worker's run, out of retries, that the sweep failed while the broker was away
    run = dead_attempt(alice, retries=0)
    assert events(monkeypatch, refused=True) == []
    maintenance.sweep_runs(reporter=SWEEPER)
    assert ImportRun.objects.get(pk=run.pk).status == "failed"
    assert told(run) is False

    # When the next passes come, the broker back
    sent = events(monkeypatch)
    maintenance.sweep_runs(reporter=SWEEPER)
    maintenance.sweep_runs(reporter=SWEEPER)

    # Then the lost task's end is told once, failed, and the run says so
    assert sent == ["task-failed"]
    assert told(run) is True


def test_a_lost_run_sent_again_while_the_broker_was_away_is_told_failed_once_it_ended(
    alice, monkeypatch
):
    # Given a dead worker's run that the sweep sent again while the broker was away
    run = dead_attempt(alice, retries=3)
    events(monkeypatch, refused=True)
    maintenance.sweep_runs(reporter=SWEEPER)
    assert ImportRun.objects.get(pk=run.pk).status == "retrying"

    # ... and which its next attempt ended well, under its new task
    again = services.load_run(run.pk)
    services.finish_run(again, "succeeded")

    # When the next pass comes, the broker back
    sent = events(monkeypatch)
    maintenance.sweep_runs(reporter=SWEEPER)

    # Then the lost attempt's task is told failed (it was: the run was sent again), once
    assert sent == ["task-failed"]
    assert told(run) is True
