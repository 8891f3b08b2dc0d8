"""A run cancelled while it waited (queued, in its backoff, parked in its owner's line) stays
REVOKED in Flower once its message comes (endings hunt). Its task was told REVOKED at the
cancel (schedules.revoked_tasks), but the message, delivered when its countdown ended, ran and
ended SUCCESS, which Flower lets overwrite REVOKED: the task of a cancelled run said SUCCESS for
good. A run cancelled before any worker took it said SUCCESS from the start."""

import time

import pytest
import requests
from django.db import transaction

from schedules import services
from tests.conftest import wait_for
from tests.factories import PRODUCTS_CSV, make_import
from tests.reliability import FAST, start_flower

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]

AUTH = ("ops", "s3cret-flower")


def flower_task(base: str, task_id: str) -> dict:
    answer = requests.get(f"{base}/api/task/info/{task_id}", auth=AUTH, timeout=5)
    return answer.json() if answer.status_code == 200 else {}


def test_a_run_cancelled_before_its_message_came_stays_revoked_in_flower(
    alice, csv_server, processes
):
    # Given a worker, Flower, and alice's run cancelled before its message left
    processes.start("worker", **FAST)
    base = start_flower(processes, AUTH)
    imp = make_import(alice, csv_server.serve("/p.csv", PRODUCTS_CSV))
    with transaction.atomic():
        run = services.enqueue_run(imp, trigger="api", user=alice)
        services.cancel_run(run, alice)

    # When the worker takes its message
    wait_for(
        lambda: (
            f"[{run.celery_task_id}]" in processes.log_of("worker")
            and flower_task(base, run.celery_task_id).get("state") in ("SUCCESS", "REVOKED")
        ),
        30,
        what="the task to end\n" + processes.logs(),
    )
    time.sleep(1)

    # Then Flower says the task was revoked, as the run log says it was cancelled
    assert flower_task(base, run.celery_task_id)["state"] == "REVOKED"
    assert csv_server.hits.get("/p.csv") is None
