"""PostgreSQL restored from a backup while the broker keeps the messages sent since the backup.

The runs created after the backup are gone, and their ids are given again to the next runs;
their messages are still in the broker. Such a message used to run the new run that took its
run's id (the restore hunt): as its own, under its import's time limit and label, the run's
task id replaced by its own. Bob's run of a 3,600 s import ended `timed_out` with "the run
exceeded its 2s time limit (set when it was queued; the import's is now 3600s)", alice's
import's limit. A message is now its run's only if it carries the run's task id; any other is
dropped, in words, and so is one whose run no longer exists (it was dropped without a word).
"""

from pathlib import Path

import pytest
from django.db import connection

from common.redis_client import client
from schedules import services
from schedules.models import ImportRun, ScheduledImport
from tests.backup_support import pg_dump, pg_restore
from tests.conftest import wait_for
from tests.factories import make_import
from tests.reliability import FAST, big_csv

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]

ROWS = 12_000


def kept_by_the_broker(task_ids: list[str]) -> list[str]:
    """Which of these tasks' messages the broker still holds, queued or taken and unacked."""
    held = client().lrange("celery", 0, -1) + client().hvals("unacked")
    return [task_id for task_id in task_ids if any(task_id.encode() in raw for raw in held)]


def backup(path: Path) -> Path:
    """The database's data and its sequences' values, as an operator's pg_dump takes them."""
    pg_dump("--format=custom", "--data-only", f"--file={path}")
    return path


def restore(path: Path) -> None:
    """Every table emptied and the backup loaded back: the sequences are where they were."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        tables = ", ".join(f'"{name}"' for (name,) in cursor.fetchall())
        cursor.execute(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")
    pg_restore("--data-only", "--disable-triggers", "--single-transaction", str(path))


def test_the_messages_of_runs_lost_with_a_restore_run_nothing_and_say_so(
    alice, bob, csv_server, processes, tmp_path
):
    # Given alice's two imports with a 2 s time limit, bob's import whose file takes some
    # seconds, and a backup taken then
    quick = csv_server.serve("/quick.csv", "sku,name\nA,apple\n")
    slow = csv_server.serve("/slow.csv", big_csv(ROWS), chunk_delay=0.6)
    alices = [
        make_import(alice, quick, name=name, dataset=name, timeout_seconds=2)
        for name in ("alices-first", "alices-second")
    ]
    bobs = make_import(bob, slow, name="bobs", dataset="bobs")
    taken = backup(tmp_path / "backup.dump")
    # ... and alice's runs triggered after it, their messages waiting for a worker
    lost = [services.enqueue_run(imp, trigger="manual", user=alice) for imp in alices]

    # When the database is restored from the backup, and bob's run takes the first one's id
    restore(taken)
    bobs = ScheduledImport.objects.get(pk=bobs.pk)
    run = services.enqueue_run(bobs, trigger="manual", user=bob)
    assert run.pk == lost[0].pk
    processes.start("worker", **FAST)

    # Then bob's run runs once, from its own message, as bob's import says
    ended = wait_for(
        lambda: ImportRun.objects.filter(pk=run.pk, finished_at__isnull=False).first(),
        60,
        what="bob's run to end\n" + processes.logs(),
    )
    assert (ended.status, ended.error_message, ended.rows_read) == ("succeeded", "", ROWS)
    assert (ended.celery_task_id, ended.attempts) == (run.celery_task_id, 1)
    # ... the broker keeps none of the three messages (theirs alone: the runner's Redis database
    # is flushed once per session, and an earlier test's worker, killed, left its message unacked)
    mine = [lost[0].celery_task_id, lost[1].celery_task_id, run.celery_task_id]
    wait_for(
        lambda: not kept_by_the_broker(mine),
        60,
        what="the broker to let the three messages go",
    )
    # ... and the worker says what it dropped, in words
    log = processes.log_of("worker")
    assert (
        f"run {run.pk} is not this message's run: the message (task {lost[0].celery_task_id}) "
        f"is not its own (task {run.celery_task_id})"
    ) in log
    assert (
        f"run {lost[1].pk} does not exist (deleted, or the database was restored from a backup "
        "taken before it): its message is dropped"
    ) in log
    assert "Traceback" not in log
    assert not ImportRun.objects.filter(pk=lost[1].pk).exists()
