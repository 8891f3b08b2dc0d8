"""A worker SIGKILLed in the middle of an import: the run is finished once, nothing lost, nothing
twice. Two ways to die: the pool process (the worker hands the message back, reject on worker
lost) and the whole worker (nothing hands it back; the maintenance sweep notices the silent run
and queues another attempt)."""

import signal
import time

import pytest

from schedules import services
from schedules.models import ImportRun
from tests.conftest import wait_for
from tests.factories import make_import
from tests.reliability import FAST, big_csv, figures, pool_children, wait_for_download

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]

ROWS = 20_000


def start_slow_run(alice, csv_server, processes):
    # ~500 KB in 64 KiB chunks, 0.5 s apart: a four-second download to die in.
    url = csv_server.serve("/big.csv", big_csv(ROWS), chunk_delay=0.5)
    # (paused: its hourly tick came due at the top of an hour, beside the run under test, when
    # a CI ran it at 05:00)
    imp = services.pause_import(make_import(alice, url, retry_backoff_seconds=1))
    run = services.enqueue_run(imp, trigger="manual", user=alice)
    wait_for_download(csv_server, run, processes.logs())
    time.sleep(1.5)  # well into the download
    return imp, ImportRun.objects.get(pk=run.pk)


def test_a_killed_pool_process_hands_the_run_back_and_it_finishes_once(
    alice, csv_server, processes
):
    # Given two workers, one of them importing a slow file
    workers = {name: processes.start("worker", WORKER_NAME=name, **FAST) for name in ("w1", "w2")}
    wait_for(lambda: all(pool_children(w) for w in workers.values()), 30, what="pools")
    imp, run = start_slow_run(alice, csv_server, processes)
    victim = workers[run.worker.split("@")[0]]

    # When its pool process is SIGKILLed mid-download
    for child in pool_children(victim):
        child.send_signal(signal.SIGKILL)

    # Then the message comes back and the run is finished once
    run = wait_for(
        lambda: ImportRun.objects.filter(pk=run.pk, status="succeeded").first(),
        60,
        what="the run to finish after the kill\n" + processes.logs(),
    )
    result = figures(
        "pool process SIGKILL",
        imp,
        ROWS,
        attempts=run.attempts,
        downloads=csv_server.hits["/big.csv"],
    )
    assert result["runs"] == 1
    assert run.attempts == 2
    assert "worker running this attempt was lost" in str(run.error_details["attempts"])
    assert (result["records"], result["lost_rows"], result["wrong_rows"]) == (ROWS, 0, 0)
    assert (run.rows_read, run.rows_inserted) == (ROWS, ROWS)


def test_a_killed_worker_is_noticed_by_the_sweep_and_another_worker_finishes_the_run(
    alice, csv_server, processes
):
    # Given two workers and beat (which runs the maintenance sweep every 2 s)
    workers = {name: processes.start("worker", WORKER_NAME=name, **FAST) for name in ("w1", "w2")}
    processes.start("beat", **FAST)
    wait_for(lambda: all(pool_children(w) for w in workers.values()), 30, what="pools")
    imp, run = start_slow_run(alice, csv_server, processes)
    victim_name = run.worker.split("@")[0]

    # When the whole worker (main process and pool) is SIGKILLed: nobody hands the message back,
    # and Redis would redeliver it only after the visibility timeout (hours)
    killed_at = time.monotonic()
    processes.stop(workers[victim_name], signal.SIGKILL)

    # Then the sweep queues another attempt, which the surviving worker finishes
    run = wait_for(
        lambda: ImportRun.objects.filter(pk=run.pk, status="succeeded").first(),
        60,
        what="the run to be recovered\n" + processes.logs(),
    )
    recovered_after = time.monotonic() - killed_at
    result = figures(
        "whole worker SIGKILL",
        imp,
        ROWS,
        attempts=run.attempts,
        finished_by=run.worker.split("@")[0],
        recovered_after_s=round(recovered_after, 1),
    )
    assert result["runs"] == 1
    assert run.attempts == 2
    assert run.worker.split("@")[0] != victim_name
    assert "was lost (no heartbeat" in str(run.error_details["attempts"])
    assert (result["records"], result["lost_rows"], result["wrong_rows"]) == (ROWS, 0, 0)
