"""A run waiting its turn behind the owner's cap (tasks.fairness) bounces as a retry message
with a countdown, held unacknowledged by a worker until due. When that worker is killed outright
(SIGKILL, the OOM killer, a lost node), the message stays in Redis's unacked hash until the
visibility timeout. Reconciliation took it for a live worker's for STALE_QUEUED_SECONDS (30
min): the run stayed `queued`, "waiting its turn: 1 run of this owner running" while none ran,
and beat skipped every later tick of the import as "still waits for a worker", while a new
worker sat idle (a soak of the cluster left three runs so for 6-10 minutes). Now reconciliation
asks the live workers what they hold (project/worker_held.py): a message none holds is sent
again."""

import os
import signal
import time

import pytest

from schedules.models import ImportRun
from tests.api_support import API, client_for
from tests.conftest import wait_for
from tests.factories import make_import
from tests.reliability import FAST

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]

ENV = {**FAST, "WORKER_CONCURRENCY": "2", "MAX_RUNNING_PER_OWNER": "1"}


def slow_csv() -> bytes:
    return ("sku,name\n" + "".join(f"S{i:06d},{'x' * 200}\n" for i in range(1200))).encode()


def test_a_run_waiting_its_turn_on_a_killed_worker_runs_once_the_owner_has_room(
    alice, csv_server, processes
):
    slow = make_import(
        alice, csv_server.serve("/slow.csv", slow_csv(), chunk_delay=2.0), name="slow",
        dataset="slow", interval_seconds=3600, max_retries=0,
    )  # fmt: skip
    quick = make_import(
        alice, csv_server.serve("/q.csv", "sku,name\nA,1\n"), name="quick", dataset="quick",
        interval_seconds=5,
    )  # fmt: skip
    worker = processes.start("worker", WORKER_NAME="first", **ENV)
    processes.start("beat", **ENV)
    answer = client_for(alice).post(f"{API}/imports/{slow.pk}/run")
    assert answer.status_code == 202, answer.content
    slow_run = ImportRun.objects.get(pk=answer.json()["id"])
    wait_for(
        lambda: ImportRun.objects.get(pk=slow_run.pk).status == "running", 30,
        what="the slow run to start\n" + processes.logs(),
    )  # fmt: skip
    deferred = wait_for(
        lambda: ImportRun.objects.filter(
            scheduled_import=quick, status="queued", error_message__startswith="waiting its turn"
        ).first(),
        30,
        what="a run of quick waiting its turn\n" + processes.logs(),
    )
    time.sleep(1.5)  # its retry (1 s countdown) is held by the worker

    # The whole worker dies; a new one takes its place
    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait(10)
    processes.start("worker", WORKER_NAME="second", **ENV)

    # The slow run is recovered by the sweep; after it, the owner has room again
    wait_for(
        lambda: ImportRun.objects.get(pk=slow_run.pk).finished_at is not None, 90,
        what="the slow run to end\n" + processes.logs(),
    )  # fmt: skip

    # Then the waiting run runs, once the owner has room, and so do the import's next ticks
    wait_for(
        lambda: ImportRun.objects.get(pk=deferred.pk).status == "succeeded", 60,
        what="the waiting run to run\n" + processes.logs(),
    )  # fmt: skip
    wait_for(
        lambda: ImportRun.objects.filter(
            scheduled_import=quick, queued_at__gt=deferred.queued_at, status="succeeded"
        ).exists(),
        60,
        what="a later tick to run\n" + processes.logs(),
    )
