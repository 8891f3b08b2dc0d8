"""Flower (Procfile `flower`) behind basic auth from the environment, persistent, with
Prometheus `/metrics`, showing a finished import task that a real worker ran."""

import pytest
import requests

from project.devservices import free_port
from schedules import services
from schedules.models import ImportRun
from tests.conftest import answers, wait_for
from tests.factories import PRODUCTS_CSV, make_import

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]

AUTH = ("ops", "s3cret-flower")


def test_flower_shows_a_finished_import_task_behind_basic_auth(alice, csv_server, processes):
    # Given a worker and Flower with basic auth from the environment
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    processes.start("worker")
    flower = processes.start("flower", FLOWER_PORT=str(port), FLOWER_BASIC_AUTH=":".join(AUTH))
    wait_for(lambda: answers(f"{base}/healthcheck"), 30, what="flower\n" + processes.logs())

    # When an import of a slow file (about 2 s) runs on the worker
    body = PRODUCTS_CSV + "".join(f"S-{i},item {i},{i}.5\n" for i in range(40_000))
    imp = make_import(alice, csv_server.serve("/p.csv", body, chunk_delay=0.1))
    run = services.enqueue_run(imp, trigger="api", user=alice)

    # Then, while it runs, Flower shows its progress through the task state
    def progress():
        url = f"{base}/api/task/result/{run.celery_task_id}"
        result = requests.get(url, auth=AUTH, timeout=5).json()
        return result if result.get("state") == "PROGRESS" else None

    # (Flower's result API gives a state's meta only once the task is ready: the state it is)
    wait_for(progress, 30, interval=0.2, what="PROGRESS in flower\n" + processes.logs())
    wait_for(
        lambda: ImportRun.objects.filter(pk=run.pk, status="succeeded").exists(),
        60,
        what="the run to succeed\n" + processes.logs(),
    )

    # And Flower's API shows the finished task, with auth only
    def finished_task():
        tasks = requests.get(f"{base}/api/tasks", auth=AUTH, timeout=5).json()
        task = tasks.get(run.celery_task_id)
        return task if task and task["state"] == "SUCCESS" else None

    task = wait_for(finished_task, 30, what="the task in flower\n" + processes.logs())
    assert task["name"] == "importbeat.execute_run"
    assert requests.get(f"{base}/api/tasks", timeout=5).status_code == 401
    assert requests.get(f"{base}/", timeout=5).status_code == 401

    # And its Prometheus metrics answer
    metrics = requests.get(f"{base}/metrics", auth=AUTH, timeout=5)
    assert metrics.status_code == 200
    assert "flower_events_total" in metrics.text

    # And, persistent, it saves what it saw when it stops
    processes.stop(flower)
    assert list(processes.log_dir.glob("flower.db*"))


def test_outside_development_flower_refuses_to_start_without_basic_auth(processes):
    flower = processes.start(
        "flower",
        FLOWER_PORT=str(free_port()),
        FLOWER_BASIC_AUTH="",
        DJANGO_DEBUG="0",
        DJANGO_SECRET_KEY="not-a-dev-machine",
    )

    assert flower.wait(30) != 0
    assert "FLOWER_BASIC_AUTH (user:password) is required" in processes.logs()
