"""Flower never contradicts the run log: a failed run's task is FAILURE with the run's error,
a partial run's is SUCCESS with its counts, and the task list names the import (issue 16: a
run failed on HTTP 404 showed in Flower as SUCCESS, and the Failed counter stayed 0)."""

import pytest
import requests

from schedules import services
from schedules.models import ImportRun
from tests.conftest import Route, wait_for
from tests.factories import PRODUCTS_CSV, make_import
from tests.reliability import start_flower, wait_for_the_end

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]

AUTH = ("ops", "s3cret-flower")


def test_flowers_task_states_follow_the_runs(alice, csv_server, processes):
    # Given a worker and Flower
    processes.start("worker")
    base = start_flower(processes, AUTH)

    # When one import fails on HTTP 404, one lands all rows but one, and one succeeds on its
    # second attempt (HTTP 503 first)
    missing = make_import(alice, csv_server.base_url + "/gone.csv", name="gone", dataset="gone")
    bad_row = PRODUCTS_CSV + "D-4,Drum\n"  # a row with a field missing
    partial = make_import(alice, csv_server.serve("/p.csv", bad_row), name="partly")
    answers = iter([Route(b"busy", status=503)])
    csv_server.routes["/later.csv"] = lambda: next(answers, Route(PRODUCTS_CSV.encode()))
    retried = make_import(
        alice, csv_server.base_url + "/later.csv", name="later", dataset="later",
        retry_backoff_seconds=1, retry_backoff_max_seconds=1,
    )  # fmt: skip
    runs = [services.enqueue_run(imp, trigger="api", user=alice) for imp in (missing, partial)]
    runs.append(services.enqueue_run(retried, trigger="api", user=alice))
    failed_run, partial_run, retried_run = (wait_for_the_end(r, processes) for r in runs)
    statuses = (failed_run.status, partial_run.status, retried_run.status, retried_run.attempts)
    assert statuses == ("failed", "partial", "succeeded", 2)

    # Then Flower's own API (as its task list reads it) says FAILURE with the run's error
    tasks = wait_for(
        lambda: _tasks_in_final_state(base, [failed_run, partial_run, retried_run]),
        30,
        what="the tasks in flower\n" + processes.logs(),
    )
    failed_task, partial_task = tasks[failed_run.celery_task_id], tasks[partial_run.celery_task_id]
    assert failed_task["state"] == "FAILURE"
    assert "the server answered HTTP 404" in failed_task["exception"]
    assert failed_run.error_message in failed_task["exception"]
    # ... and SUCCESS with the partial run's status and counts
    assert partial_task["state"] == "SUCCESS"
    assert "'status': 'partial'" in partial_task["result"]
    assert "'rows_failed': 1" in partial_task["result"]
    # ... and the retried one SUCCESS after a retry
    retried_task = tasks[retried_run.celery_task_id]
    assert (retried_task["state"], retried_task["retries"]) == ("SUCCESS", 1)
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
