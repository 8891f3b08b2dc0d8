"""A run made by `run_import` (in the foreground, no worker) is its own across a database
restore, as a worker's run is (restore2 hunt).

A restore gives the ids of the runs created since the backup to the next runs, and a run's
message is its run's only under the run's task id (tasks.runner._message_of). A foreground
run had no task id, so any message and any attempt counted as its own:
- alice's `run_import`, running as the database was restored, ended bob's new run, which had
  taken its run's id, `succeeded` with alice's 30,000 rows, and bob's import never ran;
- a message of a run lost with the restore (alice's, 2 s time limit, waiting in the broker)
  took bob's foreground run that had its id, once `run_import` was killed (the OOM killer),
  and ran bob's import under alice's limit: `timed_out`, "the run exceeded its 2s time limit
  (set when it was queued; the import's is now 3600s)".
A foreground run now has a task id of its own, which no message carries.
"""

import signal
import subprocess
from pathlib import Path

import pytest
from django.db import transaction

from schedules import services
from schedules.models import ImportRun, Record, ScheduledImport
from tests.backup_support import backup, restore_in_this_transaction
from tests.conftest import BASE_DIR, wait_for
from tests.factories import make_import
from tests.reliability import FAST, big_csv

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]


def run_import(processes, imp: ScheduledImport, log: Path) -> subprocess.Popen:
    """`manage.py run_import` of `imp` in a process of its own, stopped with the others."""
    out = open(log, "wb")  # noqa: SIM115 (lives as long as the process)
    command = subprocess.Popen(
        [str(BASE_DIR / ".venv" / "bin" / "python"), "manage.py", "run_import", str(imp.pk),
         "--no-progress"],
        cwd=BASE_DIR, env=processes.env(**FAST), stdout=out, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    processes.started.append(("run_import", command))
    return command


def running_run_of(imp: ScheduledImport, log: Path) -> ImportRun:
    return wait_for(
        lambda: ImportRun.objects.filter(scheduled_import=imp, status="running").first(),
        30,
        what=f"the foreground run of import {imp.pk} to start\n" + log.read_text(),
    )


def test_a_foreground_run_living_through_a_restore_leaves_the_run_that_took_its_id_alone(
    alice, bob, csv_server, processes, tmp_path
):
    # Given alice's import of a file that takes seconds, bob's import, and a backup
    slow = csv_server.serve("/alices.csv", big_csv(30_000), chunk_delay=0.5)
    quick = csv_server.serve("/bobs.csv", "sku,name\nB,bob\n")
    alices = make_import(alice, slow, name="alices", dataset="alices")
    bobs = make_import(bob, quick, name="bobs", dataset="bobs")
    taken = backup(tmp_path / "backup.sql")
    # ... and alice's run_import, running
    log = tmp_path / "run_import.log"
    command = run_import(processes, alices, log)
    lost = running_run_of(alices, log)

    # When the database is restored under it, and bob's run takes its run's id
    with transaction.atomic():
        restore_in_this_transaction(taken)
        bobs = ScheduledImport.objects.get(pk=bobs.pk)
        run = services.enqueue_run(bobs, trigger="manual", user=bob)
    assert run.pk == lost.pk
    command.wait(120)

    # Then bob's run is left waiting for its own message, alice's rows not written
    now = ImportRun.objects.get(pk=run.pk)
    assert (now.status, now.finished_at, now.rows_committed_at) == ("queued", None, None)
    assert (now.error_message, now.celery_task_id) == ("", run.celery_task_id)
    assert not Record.objects.filter(dataset=alices.dataset).exists()
    # ... and the command says what became of its run, not bob's run's status
    said = log.read_text()
    assert command.returncode == 1
    assert f"run {run.pk} cancelled: {services.TAKEN_OVER_WHILE_RUNNING}" in said
    assert "Traceback" not in said


def test_a_message_lost_with_a_restore_does_not_run_a_foreground_run_under_its_id(
    alice, bob, csv_server, processes, tmp_path
):
    # Given alice's import with a 2 s time limit, bob's import whose file takes seconds, a
    # backup, and alice's run triggered since, its message waiting for a worker
    quick = csv_server.serve("/quick.csv", "sku,name\nA,apple\n")
    slow = csv_server.serve("/slow.csv", big_csv(12_000), chunk_delay=0.6)
    alices = make_import(alice, quick, name="alices", dataset="alices", timeout_seconds=2)
    bobs = make_import(bob, slow, name="bobs", dataset="bobs")
    taken = backup(tmp_path / "backup.sql")
    lost = services.enqueue_run(alices, trigger="manual", user=alice)
    # ... the database restored from the backup
    with transaction.atomic():
        restore_in_this_transaction(taken)
    bobs = ScheduledImport.objects.get(pk=bobs.pk)

    # When bob runs his import in the foreground, its run taking alice's run's id, the command
    # is killed as it runs (the OOM killer), and a worker comes back
    log = tmp_path / "run_import.log"
    command = run_import(processes, bobs, log)
    run = running_run_of(bobs, log)
    assert run.pk == lost.pk
    processes.stop(command, signal.SIGKILL)
    processes.start("worker", **FAST)

    # Then alice's message is dropped, in words, and bob's run is not run under her message
    said = f"run {run.pk} is not this message's run: the message (task {lost.celery_task_id})"
    wait_for(
        lambda: said in processes.log_of("worker"),
        30,
        what="alice's message to be dropped\n" + processes.logs(),
    )
    now = ImportRun.objects.get(pk=run.pk)
    assert (now.status, now.attempts, now.celery_task_id) == ("running", 1, run.celery_task_id)
    assert "run started" not in processes.log_of("worker")
