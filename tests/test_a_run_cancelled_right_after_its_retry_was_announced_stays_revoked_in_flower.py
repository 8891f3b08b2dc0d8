"""A run cancelled right after its task announced a retry stays REVOKED in Flower, as the run
log says it was cancelled (leftovers hunt).

Regression: the worker that announced the retry looks at the run once its `task-retried` event
has left (tasks.lost_tasks.end_retried_task) and tells Flower the end of a run that is over. A
cancel in between (the run `retrying`, POST /runs/{id}/cancel) told REVOKED, then that look
found the run cancelled and told SUCCESS, which Flower keeps over the REVOKED the retried
message tells when it comes: the task of a cancelled run said SUCCESS for good.

The window is held open by a hook of this test's own (a sitecustomize on the worker's path):
Celery's task_retry signal, in the pool process before the main process announces the retry,
waits until the test has cancelled the run.
"""

import time

import pytest
import requests

from schedules import revoked_tasks, services
from schedules.models import ImportRun
from tasks import lost_tasks
from tests.api_support import SOURCE, make_run
from tests.conftest import wait_for
from tests.factories import make_import
from tests.reliability import FAST, start_flower

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]

AUTH = ("ops", "s3cret-flower")

# Loaded by the worker's interpreter at start (sitecustomize), in this test only.
HELD_AT_THE_RETRY = """
import os, time
gate = os.environ["TEST_RETRY_GATE"]
from celery.signals import task_retry

@task_retry.connect(weak=False)
def held(**kwargs):
    open(gate + ".reached", "w").close()
    deadline = time.time() + 30
    while not os.path.exists(gate) and time.time() < deadline:
        time.sleep(0.05)
"""


def flower_task(base: str, task_id: str) -> dict:
    answer = requests.get(f"{base}/api/task/info/{task_id}", auth=AUTH, timeout=5)
    return answer.json() if answer.status_code == 200 else {}


def test_a_run_cancelled_right_after_its_retry_was_announced_stays_revoked_in_flower(
    alice, csv_server, processes, tmp_path
):
    # Given a worker whose retries wait at the announcement until the test lets them go, and
    # Flower
    hook, gate = tmp_path / "hook", tmp_path / "gate"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(HELD_AT_THE_RETRY)
    processes.start("worker", **FAST, PYTHONPATH=str(hook), TEST_RETRY_GATE=str(gate))
    base = start_flower(processes, AUTH)
    # ... and alice's run, whose source answers 503: its first attempt fails and is retried
    url = csv_server.serve("/p.csv", b"busy", status=503)
    imp = make_import(alice, url, retry_backoff_seconds=1, retry_backoff_max_seconds=2)
    run = services.enqueue_run(imp, trigger="api", user=alice)
    wait_for(lambda: (tmp_path / "gate.reached").exists(), 30, what="a retry\n" + processes.logs())
    assert ImportRun.objects.get(pk=run.pk).status == "retrying"

    # When alice cancels it as its task announces the retry
    services.cancel_run(ImportRun.objects.get(pk=run.pk), alice)
    wait_for(
        lambda: flower_task(base, run.celery_task_id).get("state") == "REVOKED",
        30,
        what="the cancel told to Flower\n" + processes.logs(),
    )
    gate.touch()
    # ... and the retried message (due within 2 s) comes and finds it cancelled
    wait_for(
        lambda: processes.log_of("worker").count(f"[{run.celery_task_id}] received") >= 2,
        30,
        what="the retried message\n" + processes.logs(),
    )
    time.sleep(2)

    # Then Flower says the task was revoked, as the run log says the run was cancelled
    assert ImportRun.objects.get(pk=run.pk).status == "cancelled"
    assert flower_task(base, run.celery_task_id)["state"] == "REVOKED"


@pytest.mark.parametrize(
    "given, told",
    [
        # Cancelled in the backoff of its first attempt's retry: the cancel told REVOKED
        (
            {"attempts": 1, "error_details": {"attempts": [{"attempt": 1, "retry_in": 5.0}]}},
            "revoked",
        ),
        # Cancelled while it waited its turn (come back later, parked), before any attempt
        ({"attempts": 0}, "revoked"),
        # Cancelled while its second attempt ran, on another worker: it ended SUCCESS there
        (
            {"attempts": 2, "error_details": {"attempts": [{"attempt": 1, "retry_in": 5.0}]}},
            "ended",
        ),
    ],
)
def test_the_worker_that_announced_the_retry_tells_revoked_of_a_run_cancelled_while_it_waited(
    alice, monkeypatch, given, told
):
    # Given alice's run cancelled after its task announced a retry
    sent: list[tuple[str, object]] = []
    monkeypatch.setattr(lost_tasks, "end_lost_task", lambda *a: sent.append(("ended", a[0])))
    monkeypatch.setattr(
        revoked_tasks, "show_revoked", lambda tasks: sent.append(("revoked", tasks))
    )
    run = make_run(make_import(alice, SOURCE), "cancelled", celery_task_id="task-9", **given)

    # When the worker that announced the retry looks at the run
    lost_tasks.end_retried_task(
        services.EXECUTE_RUN, "task-9", [run.pk], "worker@a", in_background=False
    )

    # Then it tells Flower REVOKED of a run cancelled while it waited, as the cancel did, and
    # the run's end (SUCCESS with its summary) of one cancelled while an attempt ran
    expected = [("task-9", "worker@a")] if told == "revoked" else "task-9"
    assert sent == [(told, expected)]
