"""50 manual triggers of one import at the same moment: exactly one run, and it runs once.

Two layers are hammered: 50 threads call `services.enqueue_run` (the API's and the admin's
path: one run is queued, 49 callers get "already active"), then 50 deliveries of that one
run's message reach four worker processes at once (what a redelivery storm would do): the lease
and the claim let exactly one attempt through."""

import threading

import pytest
from django.db import connection

from schedules import services
from schedules.models import ImportRun
from tasks.tasks import execute_run
from tests.conftest import wait_for
from tests.factories import make_import
from tests.reliability import FAST, big_csv, figures

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]

ROWS = 5_000
TRIGGERS = 50


def at_once(count: int, action) -> list[object]:
    """Run `action` in `count` threads released together; return what each returned or raised."""
    barrier = threading.Barrier(count)
    results: list[object] = [None] * count

    def worker(index: int) -> None:
        barrier.wait()
        try:
            results[index] = action()
        except Exception as error:
            results[index] = error
        finally:
            connection.close()  # each thread has its own connection

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results


def test_fifty_simultaneous_manual_triggers_make_one_run_that_runs_once(
    alice, csv_server, processes
):
    # Given an import with a file that takes a few seconds to download, and four worker processes
    url = csv_server.serve("/big.csv", big_csv(ROWS), chunk_delay=1.0)
    imp = make_import(alice, url)
    for name in ("w1", "w2"):
        processes.start("worker", WORKER_NAME=name, **{**FAST, "WORKER_CONCURRENCY": "2"})

    # When 50 callers trigger it at the same moment
    outcomes = at_once(TRIGGERS, lambda: services.enqueue_run(imp, trigger="manual", user=alice))
    queued = [o for o in outcomes if isinstance(o, ImportRun)]
    refused = [o for o in outcomes if isinstance(o, services.RunAlreadyActive)]
    assert len(queued) == 1, outcomes
    assert len(refused) == TRIGGERS - 1
    run = queued[0]

    # ... and 50 more deliveries of its message arrive together
    deliveries = at_once(
        TRIGGERS, lambda: execute_run.apply_async(args=[run.pk], task_id=run.celery_task_id)
    )
    assert not [d for d in deliveries if isinstance(d, Exception)], deliveries

    # Then the one run runs once
    run = wait_for(
        lambda: ImportRun.objects.filter(pk=run.pk, status="succeeded").first(),
        60,
        what="the run to finish\n" + processes.logs(),
    )
    result = figures(
        "50 concurrent triggers",
        imp,
        ROWS,
        triggers=TRIGGERS,
        refused=len(refused),
        deliveries=TRIGGERS + 1,
        attempts=run.attempts,
        downloads=csv_server.hits["/big.csv"],
    )
    assert result["runs"] == 1
    assert run.attempts == 1
    assert csv_server.hits["/big.csv"] == 1
    assert (result["records"], result["lost_rows"], result["wrong_rows"]) == (ROWS, 0, 0)
