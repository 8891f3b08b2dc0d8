"""A run whose rows committed, which the sweep finished (and told Flower SUCCESS) while its
worker was paused before the attempt's end, succeeds once in Flower: the attempt, heard from
again, finds its run ended under its own task, and its task ends without a second SUCCESS.
Flower counted two (sweep4 hunt: a Procfile worker paused with SIGSTOP in the step after the
merge, the sweep run meanwhile: task-succeeded 2.0 for one run).

In process, through Celery's tracer: the sweep runs as a worker's sweep task runs it (its
events recorded) right after the attempt's rows and counts commit, its worker silent past two
lease periods and its lease expired.
"""

import uuid
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from schedules.models import ImportRun
from tasks import locks, maintenance
from tasks.engine import merge
from tasks.tasks import execute_run
from tests.factories import make_import
from tests.reliability import big_csv
from tests.test_a_cancelled_run_the_sweep_ended_ends_once_in_flower import events

pytestmark = pytest.mark.django_db(transaction=True)

SWEEPER = "sweeper@maintenance"
ROWS = 2_000  # a big file's counts commit before its run ends (record_committed_counts)


def swept_once_committed(monkeypatch, run_id: int) -> None:
    """The sweep, once the attempt's rows commit: its worker paused from then on."""
    committed = merge.record_committed_counts

    def sweep() -> None:
        silent = timezone.now() - timedelta(minutes=10)
        ImportRun.objects.filter(pk=run_id).update(heartbeat_at=silent)
        monkeypatch.setattr(locks, "run_lease_holder", lambda _import_id: None)
        maintenance.sweep_runs(reporter=SWEEPER)

    def then_paused(run, counts):
        written = committed(run, counts)
        transaction.on_commit(sweep)
        return written

    monkeypatch.setattr(merge, "record_committed_counts", then_paused)


def test_a_run_the_sweep_finished_after_its_rows_committed_is_not_told_a_second_success(
    alice, csv_server, monkeypatch
):
    # Given alice's run of a big file, whose worker is paused once its rows commit, and the
    # sweep that finishes it meanwhile from its committed counts, telling Flower SUCCESS
    imp = make_import(alice, csv_server.serve("/big.csv", big_csv(ROWS)), max_retries=0)
    run = ImportRun.objects.create(
        scheduled_import=imp, trigger="api", celery_task_id=str(uuid.uuid4())
    )
    sent = events(monkeypatch)
    swept_once_committed(monkeypatch, run.pk)

    # When its attempt, heard from again, comes to its end
    ended = execute_run.apply(args=[run.pk], task_id=run.celery_task_id)

    # Then the run succeeded with its rows, told once: the task tells no second SUCCESS
    run.refresh_from_db()
    assert (run.status, run.rows_inserted) == ("succeeded", ROWS)
    assert sent == ["task-succeeded"]
    assert ended.state == "IGNORED", ended.result
