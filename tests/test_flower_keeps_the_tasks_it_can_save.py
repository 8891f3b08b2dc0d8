"""Flower keeps at most FLOWER_MAX_TASKS tasks (Procfile `flower`, default 10,000): it pickles
all it keeps to its store every 10 s, blocking its pages meanwhile, and at its own default of
100,000 that took 3 to 5.5 s and 740 MB (tests/bench/bench_flower_state.py). The run log is the
history; Flower shows the recent tasks. (Flower reads FLOWER_MAX_TASKS by itself as well.)"""

import shelve
import time

import pytest
import requests

from project.celery import app
from project.devservices import free_port
from tests.conftest import answers, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]

AUTH = ("ops", "s3cret-flower")


def test_flower_keeps_the_newest_tasks_up_to_its_limit(processes):
    # Given a worker and Flower told to keep three tasks
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    processes.start("worker")
    processes.start(
        "flower", FLOWER_PORT=str(port), FLOWER_BASIC_AUTH=":".join(AUTH), FLOWER_MAX_TASKS="3"
    )
    wait_for(lambda: answers(f"{base}/healthcheck"), 30, what="flower\n" + processes.logs())

    def tasks() -> dict:
        return requests.get(f"{base}/api/tasks", auth=AUTH, timeout=5).json()

    # (Flower hears the workers' events once its consumer has connected, which can be after
    # its /healthcheck answers: a task that ran before was never heard of, once in CI. So a
    # task is sent, and another, until Flower hears one.)
    def flower_hears_a_task() -> bool:
        probe = app.send_task("importbeat.noop")
        probe.get(timeout=30)
        heard_by = time.monotonic() + 5
        while time.monotonic() < heard_by:
            if probe.id in tasks():
                return True
            time.sleep(0.25)
        return False

    wait_for(flower_hears_a_task, 60, interval=0, what="a task in flower\n" + processes.logs())

    # When six more tasks run, one after the other: Flower keeps the tasks it heard of last, and
    # two tasks running at once may finish in either order
    sent = []
    for _ in range(6):
        sent.append(app.send_task("importbeat.noop"))
        sent[-1].get(timeout=30)

    # Then Flower shows the newest three, and no more
    newest = {result.id for result in sent[-3:]}
    wait_for(lambda: newest <= set(tasks()), 30, what="the newest tasks\n" + processes.logs())
    assert len(tasks()) == 3


def test_by_default_flower_keeps_ten_thousand_tasks(processes):
    # Given Flower started by the Procfile's line with no limit of its own
    port = free_port()
    flower = processes.start("flower", FLOWER_PORT=str(port), FLOWER_BASIC_AUTH=":".join(AUTH))
    wait_for(
        lambda: answers(f"http://127.0.0.1:{port}/healthcheck"),
        30,
        what="flower\n" + processes.logs(),
    )

    # When it stops, saving what it keeps
    processes.stop(flower)

    # Then the state it saved keeps 10,000 tasks (Flower's own default is 100,000)
    with shelve.open(str(processes.log_dir / "flower.db"), flag="r") as saved:
        assert saved["events"].max_tasks_in_memory == 10_000
