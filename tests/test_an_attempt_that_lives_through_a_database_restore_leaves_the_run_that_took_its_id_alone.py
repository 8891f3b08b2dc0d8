"""A worker that lives through a database restore (PostgreSQL restarted from a backup under
it) leaves alone the new run that took its run's id.

The restore gives the ids of the runs created since the backup to the next runs. An attempt
still running then wrote by run id alone (restore hunt): alice's attempt, started before the
restore, ended bob's new run of another import `succeeded` with its own 30,000 rows, in
alice's dataset, and bob's import was never run (its message found its run over). A row under
the run's id now counts as the attempt's only under the attempt's task id; another is taken
for its run deleted: the attempt stops at its next safe point, its rows rolled back.
"""

from datetime import timedelta

import pytest
from django.db import transaction

from common import database_clock
from schedules import services
from schedules.models import ImportRun, Record, ScheduledImport
from tests.backup_support import backup, restore_in_this_transaction
from tests.conftest import wait_for
from tests.factories import make_import
from tests.reliability import FAST, big_csv

pytestmark = pytest.mark.django_db(transaction=True)

ROWS = 30_000


@pytest.mark.processes
def test_an_attempt_running_through_a_restore_stops_and_the_new_run_runs(
    alice, bob, csv_server, processes, tmp_path
):
    # Given alice's import of a file that takes seconds, bob's import, and a backup
    slow = csv_server.serve("/alices.csv", big_csv(ROWS), chunk_delay=0.5)
    quick = csv_server.serve("/bobs.csv", "sku,name\nB,bob\n")
    alices = make_import(alice, slow, name="alices", dataset="alices", max_retries=0)
    bobs = make_import(bob, quick, name="bobs", dataset="bobs")
    taken = backup(tmp_path / "backup.sql")
    # ... and alice's run, triggered since, running on a worker
    processes.start("worker", **FAST)
    lost = services.enqueue_run(alices, trigger="manual", user=alice)
    wait_for(
        lambda: ImportRun.objects.filter(pk=lost.pk, status="running").exists(),
        30,
        what="alice's run to start\n" + processes.logs(),
    )

    # When the database is restored under the worker, and bob's run takes alice's run's id
    with transaction.atomic():
        restore_in_this_transaction(taken)
        bobs = ScheduledImport.objects.get(pk=bobs.pk)
        run = services.enqueue_run(bobs, trigger="manual", user=bob)
    assert run.pk == lost.pk

    # Then bob's run runs, as bob's import says, once
    ended = wait_for(
        lambda: ImportRun.objects.filter(pk=run.pk, finished_at__isnull=False).first(),
        60,
        what="bob's run to end\n" + processes.logs(),
    )
    assert (ended.status, ended.rows_read, ended.attempts) == ("succeeded", 1, 1)
    assert ended.error_details == {}
    assert list(Record.objects.filter(dataset=bobs.dataset).values_list("key", flat=True)) == ["B"]
    # ... and alice's attempt ended saying its run was taken over, its rows not written
    assert not Record.objects.filter(dataset=alices.dataset).exists()
    log = processes.log_of("worker")
    said = services.TAKEN_OVER_WHILE_RUNNING
    assert f"import={alices.pk} run={run.pk} status=cancelled: {said}" in log
    assert "Traceback" not in log


def alices_attempt_over_bobs_run(alice, bob) -> tuple[ImportRun, ImportRun]:
    """Bob's run, queued, and alice's attempt as her worker holds it: a run under the same id,
    claimed by her task before the restore gave the id to bob's."""
    alices = make_import(alice, "http://127.0.0.1/a.csv", name="alices", dataset="alices")
    bobs = make_import(bob, "http://127.0.0.1/b.csv", name="bobs", dataset="bobs")
    bobs_run = ImportRun.objects.create(scheduled_import=bobs, celery_task_id="bobs-task")
    attempt = ImportRun(
        pk=bobs_run.pk, scheduled_import=alices, status=ImportRun.Status.RUNNING, attempts=1,
        started_at=database_clock.now(), celery_task_id="alices-task",
    )  # fmt: skip
    return attempt, bobs_run


def unchanged(run: ImportRun) -> bool:
    now = ImportRun.objects.get(pk=run.pk)
    return (now.status, now.rows_read, now.error_message, now.rows_committed_at) == (
        "queued", 0, "", None,
    )  # fmt: skip


def test_the_end_of_an_attempt_leaves_another_run_under_its_id_alone(alice, bob):
    # Given alice's attempt over bob's run under the same id
    attempt, bobs_run = alices_attempt_over_bobs_run(alice, bob)

    # When the attempt ends, succeeded or failed: Then bob's run is not the one ended
    with pytest.raises(ImportRun.DoesNotExist):
        services.finish_run(attempt, "succeeded", counts=services.RunCounts(rows_read=5))
    with pytest.raises(ImportRun.DoesNotExist):
        services.finish_run(attempt, "failed", error="the server answered 500")
    assert unchanged(bobs_run)
    assert ScheduledImport.objects.get(pk=bobs_run.scheduled_import_id).total_runs == 0


def test_an_attempts_retry_leaves_another_run_under_its_id_alone(alice, bob):
    attempt, bobs_run = alices_attempt_over_bobs_run(alice, bob)

    with pytest.raises(ImportRun.DoesNotExist):
        services.mark_retrying(attempt, "the server answered 503", countdown=30)

    assert unchanged(bobs_run)


def test_an_attempts_rows_are_not_committed_over_another_run_under_its_id(alice, bob):
    attempt, bobs_run = alices_attempt_over_bobs_run(alice, bob)
    counts = services.RunCounts(rows_read=50_000, rows_inserted=50_000)

    # When its merge reaches its last safe point, a small file's or a big one's
    with transaction.atomic():
        small = services.finish_with_rows(attempt, counts)
        big = services.record_committed_counts(attempt, counts)
        # Then it is told to roll its rows back: its run was taken over
        said = services.cancel_requested(attempt.pk, attempt.scheduled_import_id, "alices-task")

    assert (small, big) == (False, False)
    assert said == services.TAKEN_OVER_WHILE_RUNNING
    assert unchanged(bobs_run)
    # ... while bob's own attempt is asked nothing
    assert services.cancel_requested(bobs_run.pk, bobs_run.scheduled_import_id, "bobs-task") is None


def test_an_attempts_progress_and_heartbeat_leave_another_run_under_its_id_alone(alice, bob):
    # Given alice's attempt over bob's run under the same id, bob's run running and its worker
    # silent for a while (restore2 hunt: bob's queued run showed alice's rows_read 5,313)
    attempt, bobs_run = alices_attempt_over_bobs_run(alice, bob)
    long_ago = database_clock.now() - timedelta(minutes=10)
    ImportRun.objects.filter(pk=bobs_run.pk).update(status="running", heartbeat_at=long_ago)

    # When the attempt notes its progress and its file, and beats
    attempt.rows_read, attempt.bytes_read = 5_313, 1_000_000
    services.record_progress(attempt)
    services.record_source_file(attempt, "/srv/drop/alices.csv")
    services.heartbeat(attempt.pk, attempt.celery_task_id)

    # Then bob's run shows none of it, and looks as silent as its worker is (the sweep sends
    # it again), while bob's own attempt's beat lands
    now = ImportRun.objects.get(pk=bobs_run.pk)
    assert (now.rows_read, now.bytes_read, now.source_file) == (0, 0, "")
    assert now.heartbeat_at == long_ago
    services.heartbeat(bobs_run.pk, "bobs-task")
    assert ImportRun.objects.get(pk=bobs_run.pk).heartbeat_at > long_ago
