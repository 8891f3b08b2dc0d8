"""Flower never contradicts the run log: a failed run's task is FAILURE with the run's error,
a partial run's is SUCCESS with its counts, and the task list names the import (issue 16: a
run failed on HTTP 404 showed in Flower as SUCCESS, and the Failed counter stayed 0)."""

import pytest
import requests

from schedules import services
from schedules.models import ImportRun
from tests.conftest import wait_for
from tests.factories import PRODUCTS_CSV, make_import
from tests.reliability import start_flower, wait_for_the_end

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]

AUTH = ("ops", "s3cret-flower")


def test_flowers_task_states_follow_the_runs(alice, csv_server, processes):
    # Given a worker and Flower
    processes.start("worker")
    base = start_flower(processes, AUTH)

    # When one import fails on HTTP 404 and another lands all rows but one
    missing = make_import(alice, csv_server.base_url + "/gone.csv", name="gone", dataset="gone")
    bad_row = PRODUCTS_CSV + "D-4,Drum\n"  # a row with a field missing
    partial = make_import(alice, csv_server.serve("/p.csv", bad_row), name="partly")
    failed_run = services.enqueue_run(missing, trigger="api", user=alice)
    partial_run = services.enqueue_run(partial, trigger="api", user=alice)
    failed_run, partial_run = (wait_for_the_end(r, processes) for r in (failed_run, partial_run))
    assert (failed_run.status, partial_run.status) == ("failed", "partial")

    # Then Flower's own API (as its task list reads it) says FAILURE with the run's error
    tasks = wait_for(
        lambda: _tasks_in_final_state(base, [failed_run, partial_run]),
        30,
        what="both tasks in flower\n" + processes.logs(),
    )
    failed_task, partial_task = tasks[failed_run.celery_task_id], tasks[partial_run.celery_task_id]
    assert failed_task["state"] == "FAILURE"
    assert "the server answered HTTP 404" in failed_task["exception"]
    assert failed_run.error_message in failed_task["exception"]
    # ... and SUCCESS with the partial run's status and counts
    assert partial_task["state"] == "SUCCESS"
    assert "'status': 'partial'" in partial_task["result"]
    assert "'rows_failed': 1" in partial_task["result"]
    # ... each task naming its import
    assert f"'import_id': {missing.pk}" in failed_task["kwargs"]
    assert "'import_name': 'gone'" in failed_task["kwargs"]
    assert "'import_name': 'partly'" in partial_task["kwargs"]
    # ... and its list filtered by state finds the failure
    failures = requests.get(f"{base}/api/tasks", params={"state": "FAILURE"}, auth=AUTH, timeout=5)
    assert list(failures.json()) == [failed_run.celery_task_id]


def _tasks_in_final_state(base: str, runs: list[ImportRun]) -> dict | None:
    tasks = requests.get(f"{base}/api/tasks", auth=AUTH, timeout=5).json()
    wanted = [tasks.get(run.celery_task_id) for run in runs]
    if all(t and t["state"] in ("SUCCESS", "FAILURE") for t in wanted):
        return tasks
    return None
