"""A retry that a slow worker stores after its retried message ran on another worker, and failed
the run for good there, leaves the task FAILURE in the result backend and in Flower.

Regression (latestate hunt): a retry due at once (full jitter draws 0 s) reached another worker
before the first one stored its RETRY; Celery's Redis backend keeps only a SUCCESS, and the late
RETRY replaced the FAILURE, then the late `task-retried` did in Flower, until the first worker
told the run's end again (0.2 s in the hunt), which Flower counted as a second failure. Real
workers, the real Redis result backend and Flower; the first worker is held, by a hook of this
test's own (a sitecustomize on its path), between sending the retried message and storing its
retry, until the run has failed on the second."""

import time

import pytest
import requests
from celery.result import AsyncResult

from project.celery import app
from schedules import services
from schedules.models import ImportRun
from tests.conftest import wait_for
from tests.factories import make_import
from tests.reliability import FAST, start_flower

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]

AUTH = ("ops", "s3cret-flower")

# Loaded by the first worker's interpreter at start (sitecustomize), in this test only: Celery's
# tracer waits at the start of its retry handling (before it stores RETRY) for the test's gate.
HELD_BEFORE_THE_RETRY_IS_STORED = """
import os, time
gate = os.environ["TEST_RETRY_GATE"]
from celery.app import trace
handle_retry = trace.TraceInfo.handle_retry

def held(self, *args, **kwargs):
    open(gate + ".reached", "w").close()
    deadline = time.time() + 30
    while not os.path.exists(gate) and time.time() < deadline:
        time.sleep(0.02)
    return handle_retry(self, *args, **kwargs)

trace.TraceInfo.handle_retry = held
"""


def stored_state(task_id: str) -> str:
    return AsyncResult(task_id, app=app).backend.get_task_meta(task_id, cache=False)["status"]


def flower_state(base: str, task_id: str) -> str | None:
    answer = requests.get(f"{base}/api/task/info/{task_id}", auth=AUTH, timeout=5)
    return answer.json().get("state") if answer.status_code == 200 else None


def flower_events(base: str, event: str) -> float:
    """How many `event`s of runs' tasks Flower counted, all workers together (its /metrics)."""
    text = requests.get(f"{base}/metrics", auth=AUTH, timeout=5).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("flower_events_total{")
        and 'task="importbeat.execute_run"' in line
        and f'type="{event}"' in line
    )


def test_a_retry_stored_after_its_run_failed_on_another_worker_leaves_the_failure(
    alice, csv_server, processes, tmp_path
):
    # Given a worker held between sending a run's retry and storing it, and Flower
    hook, gate = tmp_path / "hook", tmp_path / "gate"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(HELD_BEFORE_THE_RETRY_IS_STORED)
    processes.start("worker", **FAST, PYTHONPATH=str(hook), TEST_RETRY_GATE=str(gate),
                    WORKER_NAME="slow")  # fmt: skip
    base = start_flower(processes, AUTH)
    # ... and alice's run of an import retried once at once, whose source answers 503
    url = csv_server.serve("/p.csv", b"busy", status=503)
    imp = make_import(alice, url, retry_backoff_seconds=0, retry_backoff_max_seconds=0,
                      max_retries=1)  # fmt: skip
    run = services.enqueue_run(imp, trigger="api", user=alice)
    task_id = run.celery_task_id
    wait_for(lambda: (tmp_path / "gate.reached").exists(), 30, what="a retry\n" + processes.logs())

    # When another worker takes the retried message, and the run fails for good there
    processes.start("worker", **FAST, WORKER_NAME="fast")
    wait_for(lambda: ImportRun.objects.get(pk=run.pk).status == "failed", 30,
             what="the second attempt\n" + processes.logs())  # fmt: skip
    wait_for(lambda: flower_state(base, task_id) == "FAILURE", 30, what="FAILURE in Flower")
    assert stored_state(task_id) == "FAILURE"
    # ... and only then the first worker stores its retry
    gate.touch()
    seen: set[tuple[str, str | None]] = set()

    def retry_handled() -> bool:
        seen.add((stored_state(task_id), flower_state(base, task_id)))
        return "retry: Retry in 0s" in processes.log_of("worker")

    wait_for(retry_handled, 30, interval=0.02, what="the held retry\n" + processes.logs())
    # (the retry's announcement, if any, comes from the first worker's main process next)
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline and not flower_events(base, "task-retried"):
        seen.add((stored_state(task_id), flower_state(base, task_id)))
        time.sleep(0.02)
    seen.add((stored_state(task_id), flower_state(base, task_id)))

    # Then the task said FAILURE throughout, in the result backend and in Flower, which
    # counted one failure of it, as the run log says one failed run
    assert seen == {("FAILURE", "FAILURE")}
    assert flower_events(base, "task-retried") == 0
    assert flower_events(base, "task-failed") == 1
    assert ImportRun.objects.get(pk=run.pk).status == "failed"
