"""A run whose rows committed and whose attempt then stuck until the worker killed it at its
hard time limit ends succeeded, and Flower says SUCCESS with the run's summary, as the run log
and the API do. Flower said FAILURE, "run 11 succeeded: ", and counted a failed task. A run
killed before its rows committed still fails in Flower in its words, counted once (Celery told
the kill twice, and Flower counted two failed tasks).

Real processes: the Procfile's worker and Flower. The attempt is held after its rows commit by
a hook the worker loads (a sitecustomize of the test's own on its PYTHONPATH): it waits in the
step after the merge (the staging tables' release) longer than the hard time limit.
"""

import pytest
import requests

from schedules import services
from tests.conftest import wait_for
from tests.factories import make_import
from tests.reliability import big_csv, start_flower, wait_for_the_end
from tests.test_a_run_killed_at_its_hard_time_limit_ends_at_once import with_hard_limit

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]

AUTH = ("ops", "s3cret-flower")
HARD_LIMIT = 15
ROWS = 2_000  # a big file's counts commit before its run ends (record_committed_counts)

STALL_AFTER_COMMIT = """
import os
import time

from celery.signals import worker_process_init


@worker_process_init.connect
def _stall_after_the_rows_commit(**_kwargs):
    from tasks.engine import pipeline

    released = pipeline.release_staging

    def stalled(pg, rows):
        time.sleep(float(os.environ["STALL_AFTER_COMMIT_SECONDS"]))
        return released(pg, rows)

    pipeline.release_staging = stalled
"""


def test_a_run_killed_after_its_rows_committed_succeeds_in_flower(
    alice, csv_server, processes, monkeypatch, tmp_path
):
    # Given a worker whose attempts stick after their rows commit, longer than the hard time
    # limit of alice's run's message (its soft one out of reach), and Flower
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(STALL_AFTER_COMMIT)
    processes.start(
        "worker", PYTHONPATH=str(hooks), STALL_AFTER_COMMIT_SECONDS="120",
        RUN_LEASE_SECONDS="60", MAINTENANCE_INTERVAL_SECONDS="600", WORKER_CONCURRENCY="1",
    )  # fmt: skip
    base = start_flower(processes, AUTH)
    url = csv_server.serve("/big.csv", big_csv(ROWS))
    imp = make_import(alice, url, name="sticks after commit", timeout_seconds=300, max_retries=0)
    monkeypatch.setattr(services, "run_message", with_hard_limit(services.run_message, HARD_LIMIT))

    # When the run's rows commit and the worker kills its stuck attempt
    run = services.enqueue_run(imp, trigger="manual", user=alice)
    run = wait_for_the_end(run, processes, timeout=60)

    # Then the run log says it succeeded with its rows
    assert (run.status, run.rows_read, run.rows_inserted) == ("succeeded", ROWS, ROWS), (
        run.error_message + processes.log_of("worker")[-3000:]
    )
    # (the kill did happen: Celery says so once the run is ended, ending_when_killed first)
    wait_for(lambda: "Hard time limit" in processes.log_of("worker"), 30, what="the kill")
    # ... and Flower's task succeeded with the run's summary, no failure counted for it
    task = wait_for(lambda: _ended_task(base, run.celery_task_id), 30, what="the task in flower")
    assert task["state"] == "SUCCESS", task
    assert f"'run_id': {run.pk}" in task["result"]
    assert "'status': 'succeeded'" in task["result"]
    counted = _task_events_counted(base)
    print(f"\n[figures] Flower's task events counted: {counted}")
    assert any('type="task-succeeded"' in line for line in counted), counted
    assert not any('type="task-failed"' in line for line in counted), counted


def test_a_run_killed_before_its_rows_committed_fails_once_in_flower_in_its_words(
    alice, csv_server, processes, monkeypatch
):
    # Given a worker and Flower, and alice's import whose download outlasts the hard time limit
    # of its run's message (its soft one out of reach)
    processes.start(
        "worker", RUN_LEASE_SECONDS="60", MAINTENANCE_INTERVAL_SECONDS="600",
        WORKER_CONCURRENCY="1",
    )  # fmt: skip
    base = start_flower(processes, AUTH)
    url = csv_server.serve("/slow.csv", big_csv(20_000), chunk_delay=1.0)
    imp = make_import(alice, url, name="stuck", timeout_seconds=300, max_retries=0)
    monkeypatch.setattr(services, "run_message", with_hard_limit(services.run_message, 4))

    # When the worker kills its attempt
    run = services.enqueue_run(imp, trigger="manual", user=alice)
    run = wait_for_the_end(run, processes, timeout=60)

    # Then the run timed out, and Flower's task failed in the run's words, counted once
    assert run.status == "timed_out", run.error_message
    task = wait_for(lambda: _ended_task(base, run.celery_task_id), 30, what="the task in flower")
    assert task["state"] == "FAILURE", task
    assert f"run {run.pk} timed_out: {run.error_message}" in task["exception"]
    counted = _task_events_counted(base)
    print(f"\n[figures] Flower's task events counted: {counted}")
    assert [line.rsplit(" ", 1)[1] for line in counted if 'type="task-failed"' in line] == ["1.0"]
    assert not any('type="task-succeeded"' in line for line in counted), counted


def _ended_task(base: str, task_id: str) -> dict | None:
    answer = requests.get(f"{base}/api/task/info/{task_id}", auth=AUTH, timeout=5)
    if answer.status_code != 200:
        return None
    task = answer.json()
    return task if task.get("state") in ("SUCCESS", "FAILURE") else None


def _task_events_counted(base: str) -> list[str]:
    """Flower's counts of the run tasks' final events (its Prometheus metrics)."""
    answer = requests.get(f"{base}/metrics", auth=AUTH, timeout=5)
    answer.raise_for_status()
    return [
        line
        for line in answer.text.splitlines()
        if line.startswith("flower_events_total")
        and services.EXECUTE_RUN in line
        and ('type="task-failed"' in line or 'type="task-succeeded"' in line)
    ]
