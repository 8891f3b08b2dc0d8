"""The task of an attempt the sweep took for lost stores its end in the result backend, as the
sweep tells Flower: FAILURE in the run's words (the run failed, or sent again under a new task),
SUCCESS with its status when its rows had committed. It kept the attempt's PROGRESS for a day
(CELERY_RESULT_EXPIRES): AsyncResult and Flower's result page said the import was still going,
where the run log said it failed or had been sent again (sweep4 hunt: a killed Procfile worker
left PROGRESS, the run `retrying` under another task).

In process: the sweep as a worker's sweep task runs it, the real Redis result backend.
"""

import uuid
from datetime import timedelta

import pytest
from celery import current_app
from celery.result import AsyncResult
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


def lost_with_progress(owner, *, retries: int, committed: bool = False) -> str:
    """A dead worker's running attempt whose task stored PROGRESS; its task id."""
    run = silent_attempt(owner, retries=retries)
    task = str(uuid.uuid4())
    fields = {"worker": "celery@dead", "celery_task_id": task, "heartbeat_at": SILENT_SINCE}
    if committed:
        fields.update(rows_read=5, rows_inserted=5, rows_committed_at=timezone.now())
    ImportRun.objects.filter(pk=run.pk).update(**fields)
    current_app.backend.store_result(task, {"run_id": run.pk, "rows_read": 3}, "PROGRESS")
    assert AsyncResult(task).state == "PROGRESS"
    return task


@pytest.mark.parametrize(
    ("retries", "words"),
    [(0, "failed: the worker running attempt 1 was lost"), (3, "queued again as task")],
)
def test_a_lost_attempts_task_that_failed_stores_failure_in_the_runs_words(
    alice, monkeypatch, retries, words
):
    # Given a dead worker's attempt whose task showed progress
    task = lost_with_progress(alice, retries=retries)
    events(monkeypatch)

    # When the sweep fails its run (out of retries) or sends it again
    maintenance.sweep_runs(reporter=SWEEPER)

    # Then the task's stored state is its end, in the run's words, without a traceback
    ended = AsyncResult(task)
    assert ended.state == "FAILURE", ended.info
    assert words in str(ended.info)
    assert not ended.traceback


def test_a_lost_attempts_task_whose_rows_committed_stores_success(alice, monkeypatch):
    # Given a dead worker's attempt whose rows committed, its task having shown progress
    task = lost_with_progress(alice, retries=3, committed=True)
    events(monkeypatch)

    # When the sweep finishes its run from its committed counts
    maintenance.sweep_runs(reporter=SWEEPER)

    # Then the task's stored state is SUCCESS with the run's status
    ended = AsyncResult(task)
    assert ended.state == "SUCCESS", ended.info
    assert ended.info["status"] == "succeeded"
    run = ImportRun.objects.get(celery_task_id=task)
    assert services.lost_task_end_told(run, task) is True
