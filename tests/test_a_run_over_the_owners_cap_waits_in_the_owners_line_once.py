"""A run over its owner's cap waits in its owner's line (tasks/fairness.py), delivered twice
however long it waits: once to be parked, once more when a run of its owner ends.

Regression (fairness at scale): a run over the cap came back as a Celery retry every few
seconds, so one owner's thousands of runs over the cap were a churn of messages that every other
user's message waited behind (90 s behind 5,000 runs, tests/bench/bench_fairness_at_scale.py).
"""

import time

import pytest

from schedules import services
from schedules.models import ImportRun
from tasks import maintenance
from tests.conftest import wait_for
from tests.factories import PRODUCTS_CSV, make_import
from tests.reliability import FAST, big_csv, wait_for_the_end

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]

# Without a beat: no sweep passes but the one a test runs. A run waiting for its import's
# lease would look again every second (RUN_LEASE_SECONDS 3).
ENV = {**FAST, "WORKER_CONCURRENCY": "2", "MAX_RUNNING_PER_OWNER": "1"}


def deliveries(processes, run: ImportRun) -> int:
    """The messages of `run` the worker received."""
    return processes.log_of("worker").count(f"[{run.celery_task_id}] received")


def parked(run: ImportRun, processes) -> ImportRun:
    return wait_for(
        lambda: ImportRun.objects.filter(
            pk=run.pk, status="queued", error_message__startswith=services.WAITING_ITS_TURN
        ).first(),
        30,
        what=f"run {run.pk} to wait its turn\n" + processes.logs(),
    )


@pytest.fixture
def slow_run_of_alice(alice, csv_server, processes):
    """A worker with two slots, alice's cap of one, and a slow run of hers running (8 s)."""
    url = csv_server.serve("/slow.csv", big_csv(20_000), chunk_delay=1.0)
    slow = make_import(alice, url, name="slow", dataset="slow")
    processes.start("worker", **ENV)
    run = services.enqueue_run(slow, trigger="manual", user=alice)
    wait_for(
        lambda: ImportRun.objects.get(pk=run.pk).status == "running", 30,
        what="the slow run to start\n" + processes.logs(),
    )  # fmt: skip
    return run


def quick_import(owner, csv_server, name: str):
    return make_import(owner, csv_server.serve(f"/{name}.csv", PRODUCTS_CSV), name=name,
                       dataset=name)  # fmt: skip


def test_a_parked_run_starts_when_its_owners_run_ends_without_looking_again(
    alice, csv_server, processes, slow_run_of_alice
):
    # Given alice's slow run holding her one slot
    slow = slow_run_of_alice

    # When she starts a quick import meanwhile
    quick = services.enqueue_run(quick_import(alice, csv_server, "quick"), user=alice)

    # Then it waits its turn, queued with a note, its one delivery over: no look every second
    waiting = parked(quick, processes)
    assert "at most 1 at once (MAX_RUNNING_PER_OWNER)" in waiting.error_message
    time.sleep(3)
    assert ImportRun.objects.get(pk=slow.pk).status == "running"
    assert deliveries(processes, quick) == 1

    # And once the slow run ends, it starts: delivered once more, by the end of that run
    done = wait_for_the_end(quick, processes, 60)
    slow = ImportRun.objects.get(pk=slow.pk)
    assert (done.status, done.attempts, done.error_message) == ("succeeded", 1, "")
    assert done.started_at >= slow.finished_at
    assert deliveries(processes, quick) == 2


def test_a_parked_run_cancelled_meanwhile_is_not_started_and_the_next_one_is(
    alice, csv_server, processes, slow_run_of_alice
):
    # Given two of alice's runs parked behind her slow run, the first in line cancelled
    first = services.enqueue_run(quick_import(alice, csv_server, "first"), user=alice)
    parked(first, processes)
    second = services.enqueue_run(quick_import(alice, csv_server, "second"), user=alice)
    parked(second, processes)
    services.cancel_run(ImportRun.objects.get(pk=first.pk), alice)

    # When the slow run ends, then the second one runs, and the cancelled one never started
    done = wait_for_the_end(second, processes, 60)
    assert done.status == "succeeded"
    first = ImportRun.objects.get(pk=first.pk)
    assert (first.status, first.attempts, first.started_at) == ("cancelled", 0, None)
    assert deliveries(processes, first) == 1
    assert deliveries(processes, second) == 2


def test_the_sweep_sends_a_parked_run_whose_owners_run_ended_without_sending_it(
    alice, csv_server, processes
):
    # Given alice's cap of one held by a run of hers whose worker is gone (nobody runs it)
    lost = ImportRun.objects.create(
        scheduled_import=quick_import(alice, csv_server, "lost"), trigger="manual"
    )
    ImportRun.objects.filter(pk=lost.pk).update(status="running", worker="gone@host")
    processes.start("worker", **ENV)
    quick = services.enqueue_run(quick_import(alice, csv_server, "quick"), user=alice)
    parked(quick, processes)

    # When that run is ended where no delivery of it ends (killed at its hard time limit, or
    # ended by the sweep), so nothing sends the parked run
    ImportRun.objects.filter(pk=lost.pk).update(status="failed")
    time.sleep(3)
    assert ImportRun.objects.get(pk=quick.pk).status == "queued"
    assert deliveries(processes, quick) == 1

    # Then the sweep sends it, and it runs
    maintenance.sweep_runs()
    done = wait_for_the_end(quick, processes, 60)
    assert done.status == "succeeded"
    assert deliveries(processes, quick) == 2
