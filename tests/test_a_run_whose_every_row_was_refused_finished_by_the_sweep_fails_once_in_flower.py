"""A run whose rows committed with every row refused (status `failed`), which the sweep
finished (and told Flower `task-failed`) while its worker was paused before the attempt's end,
fails once in Flower: the attempt, heard from again, finds its run ended under its own task and
fails without telling it again. Its task raised the run's failure before it asked how its end
was told, and its worker sent a second `task-failed`: Flower counted two failures of one run
(sweep4 hunt, left undone there; the succeeded case counted two SUCCESSes, fixed then).

In process, through Celery's tracer: the sweep runs as a worker's sweep task runs it (its
events recorded) right after the attempt's counts commit, its worker silent past two lease
periods and its lease expired. A worker sends no `task-failed` of its own for a failure that
says it was told (project.task_class).
"""

import uuid

import pytest

from schedules.models import ImportRun
from tasks.tasks import execute_run
from tests.factories import make_import
from tests.reliability import big_csv
from tests.test_a_cancelled_run_the_sweep_ended_ends_once_in_flower import events
from tests.test_a_run_the_sweep_finished_after_its_rows_committed_succeeds_once_in_flower import (
    ROWS,
    swept_once_committed,
)

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_run_whose_every_row_was_refused_is_not_told_a_second_failure(
    alice, csv_server, monkeypatch
):
    # Given alice's run of a big file whose every price is refused (not a whole number), its
    # worker paused once its counts commit, and the sweep that finishes it meanwhile from
    # them, `failed`, telling Flower so
    imp = make_import(
        alice,
        csv_server.serve("/refused.csv", big_csv(ROWS)),
        max_retries=0,
        columns=[{"name": "price", "type": "int", "required": True}],
    )
    run = ImportRun.objects.create(
        scheduled_import=imp, trigger="api", celery_task_id=str(uuid.uuid4())
    )
    sent = events(monkeypatch)
    swept_once_committed(monkeypatch, run.pk)

    # When its attempt, heard from again, comes to its end
    ended = execute_run.apply(args=[run.pk], task_id=run.celery_task_id)

    # Then the run failed, every row refused, told once: the task fails as told, and its
    # worker tells no second failure
    run.refresh_from_db()
    assert (run.status, run.rows_failed) == ("failed", ROWS)
    assert sent == ["task-failed"]
    assert ended.state == "FAILURE"
    assert getattr(ended.result, "told", False), repr(ended.result)
    assert str(ended.result).startswith(f"run {run.pk} failed: every row of the file was refused")
