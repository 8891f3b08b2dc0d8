"""A killed run that its worker could not end at once fails once in Flower (endings hunt).

A worker that kills a run's attempt at its hard time limit ends the run from its main process
(tasks.killed_runs). When it cannot (the run's row still locked by the dead attempt's
statement, the database away), a task ends it, and that task tells Flower the run's end. The
killing worker had already told FAILURE, "killed at its hard time limit": Flower counted two
failed tasks for one run timed out (and a failure and a success for one that ended well),
where the run log has one attempt ended. The killing worker now leaves the telling to whatever
ends the run.

Real processes: the Procfile's worker and Flower; the run's row is held by a session of the
test's own while the kill comes, as a dead attempt's statement holds it.
"""

import pytest
import requests
from django.db import connection

from schedules import services
from schedules.models import ImportRun
from tests.conftest import wait_for
from tests.factories import make_import
from tests.reliability import big_csv, start_flower, wait_for_download, wait_for_the_end
from tests.test_a_run_killed_at_its_hard_time_limit_after_its_rows_committed_succeeds_in_flower import (  # noqa: E501
    AUTH,
    _ended_task,
    _task_events_counted,
)
from tests.test_a_run_killed_at_its_hard_time_limit_ends_at_once import with_hard_limit

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]

HARD_LIMIT = 5
NOT_AT_ONCE = "killed at its hard time limit, not ended at once"


def test_a_killed_run_the_worker_could_not_end_at_once_fails_once_in_flower(
    alice, csv_server, processes, monkeypatch
):
    # Given a worker and Flower, and alice's import whose download outlasts the hard time limit
    # of its run's message (its soft one out of reach)
    worker = processes.start(
        "worker", RUN_LEASE_SECONDS="60", MAINTENANCE_INTERVAL_SECONDS="600",
        WORKER_CONCURRENCY="1",
    )  # fmt: skip
    base = start_flower(processes, AUTH)
    url = csv_server.serve("/big.csv", big_csv(20_000), chunk_delay=1.0)
    imp = make_import(alice, url, name="stuck", timeout_seconds=300, max_retries=0)
    monkeypatch.setattr(services, "run_message", with_hard_limit(services.run_message, HARD_LIMIT))
    run = services.enqueue_run(imp, trigger="manual", user=alice)
    wait_for_download(csv_server, run, processes.logs())

    # When the worker kills its attempt while the run's row is locked, and the task it sends
    # ends the run once the lock is gone
    with connection.cursor() as cursor:
        cursor.execute("BEGIN")
        cursor.execute(
            f"SELECT 1 FROM {ImportRun._meta.db_table} WHERE id = %s FOR UPDATE", [run.pk]
        )
        wait_for(
            lambda: NOT_AT_ONCE in processes.log_of("worker"), 60,
            what="the kill, not ended at once\n" + processes.logs(),
        )  # fmt: skip
        cursor.execute("ROLLBACK")
    run = wait_for_the_end(run, processes, timeout=60)

    # Then the run timed out, and Flower's task failed in the run's words, counted once
    assert run.status == "timed_out", run.error_message
    task = wait_for(lambda: _ended_task(base, run.celery_task_id), 30, what="the task in flower")
    assert task["state"] == "FAILURE", task
    words = f"run {run.pk} timed_out: {run.error_message}"
    wait_for(
        lambda: words in (_task_info(base, run).get("exception") or ""),
        30, what=f"the run's words in flower: {_task_info(base, run)}",
    )  # fmt: skip
    processes.stop(worker)  # (its events all sent)
    counted = _task_events_counted(base)
    print(f"\n[figures] Flower's task events counted: {counted}")
    failed = [float(line.rsplit(" ", 1)[1]) for line in counted if 'type="task-failed"' in line]
    assert sum(failed) == 1.0, counted
    assert not any('type="task-succeeded"' in line for line in counted), counted


def _task_info(base: str, run: ImportRun) -> dict:
    answer = requests.get(f"{base}/api/task/info/{run.celery_task_id}", auth=AUTH, timeout=5)
    return answer.json() if answer.status_code == 200 else {}
