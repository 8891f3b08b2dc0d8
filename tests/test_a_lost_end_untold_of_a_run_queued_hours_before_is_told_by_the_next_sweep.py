"""The end of a lost attempt the sweep could not tell (the broker away at its pass) is told by
the next sweep however long ago its run was queued. The scan of those ends read only runs
queued in the last 6 hours (tasks.lost_tasks.UNTOLD_QUEUED_WITHIN_SECONDS, a bound that kept it
off a million runs): a long import's run, or one that waited its turn, queued before that, was
never told, and its task stayed STARTED in Flower and PROGRESS in the result backend for good
(sweep5 hunt). The scan now reads an index of the untold ends alone (run_lost_end_untold_idx).

In process: the sweep as a worker's sweep task runs it, the real Redis result backend; Flower's
events recorded (refused at the first pass: the broker away).
"""

import uuid
from datetime import timedelta

import pytest
from celery import current_app
from celery.result import AsyncResult
from django.db.models import F
from django.utils import timezone

from schedules import services
from schedules.models import ImportRun
from tasks import lost_tasks, maintenance
from tests.test_a_cancelled_run_the_sweep_ended_ends_once_in_flower import events
from tests.test_an_attempt_taken_for_lost_writes_nothing_and_its_note_stays import silent_attempt

pytestmark = pytest.mark.django_db

SWEEPER = "sweeper@maintenance"


def test_a_lost_end_the_broker_refused_of_a_run_queued_seven_hours_ago_is_told_next_pass(
    alice, monkeypatch
):
    # Given a long import's run queued seven hours ago, its task showing progress, whose worker
    # died; the sweep failed it as lost while the broker was away (its event refused)
    run = silent_attempt(alice, retries=0)
    task = str(uuid.uuid4())
    ImportRun.objects.filter(pk=run.pk).update(
        celery_task_id=task, worker="celery@dead", queued_at=F("queued_at") - timedelta(hours=7)
    )
    current_app.backend.store_result(task, {"run_id": run.pk, "rows_read": 3}, "PROGRESS")
    events(monkeypatch, refused=True)
    ended = services.recover_lost_run(run.pk, stale_before=timezone.now())
    assert ended.status == "failed"
    lost_tasks.end_lost_task(task, ended, SWEEPER)
    assert services.lost_task_end_told(ImportRun.objects.get(pk=run.pk), task) is False

    # When the next sweep passes, the broker back
    sent = events(monkeypatch)
    maintenance.sweep_runs(reporter=SWEEPER)

    # Then Flower is told the attempt's failure, and the result backend stores it
    assert sent == ["task-failed"]
    assert services.lost_task_end_told(ImportRun.objects.get(pk=run.pk), task) is True
    stored = AsyncResult(task)
    assert stored.state == "FAILURE", stored.info
    assert "failed: the worker running attempt 1 was lost" in str(stored.info)
