"""A run whose worker stopped answering for a while (cut off from the database and Redis, then
back) is sent again by the sweep as lost; its attempt, alive after all, stops when it is heard
from again, its writes refused, and nothing runs twice. The run log never said so (sweepnote
hunt): it showed attempt 1 "lost" and attempt 2, while the first attempt's task ended "taken
over" in Flower, and nothing told an operator why the two did not add up. The attempt's entry
now says that the sweep sent the run again, why, and that the attempt was alive and stopped,
in the API's run detail and on the admin's run page.

Real processes: two Procfile workers. The first is paused (SIGSTOP, main process and pool)
mid-download, past its lease and two heartbeat periods, while the sweep runs; the second takes
the run sent again; the first is then let go on (SIGCONT).
"""

import contextlib
import os
import signal
import time

import pytest
from django.urls import reverse
from django.utils.html import escape

from schedules import services
from schedules.models import ImportRun
from tasks import maintenance
from tests.api_support import API, client_for
from tests.conftest import wait_for
from tests.factories import make_import
from tests.reliability import (
    FAST,
    big_csv,
    figures,
    pool_children,
    wait_for_download,
    wait_for_the_end,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]

ROWS = 20_000


def test_a_run_sent_again_while_its_worker_was_alive_says_so_on_that_attempt(
    alice, admin_client, csv_server, processes, settings
):
    # Given a worker importing alice's slow file (~500 KB, 64 KiB a second)
    first, imp, run = slow_run_on_a_worker(alice, csv_server, processes, settings, WORKER_NAME="w1")
    first_task = ImportRun.objects.get(pk=run.pk).celery_task_id

    # When that worker stops answering (paused, whole) until the sweep sends the run again
    with paused(first):
        swept_until(run, "retrying", processes)
        # ... another worker takes the run, and then the first one answers again
        processes.start("worker", WORKER_NAME="w2", **FAST)
        wait_for(
            lambda: _status(run) == "running",
            30,
            what="the second worker to take the run\n" + processes.logs(),
        )

    # Then the run is finished once, by the second worker, the data as if it ran once
    ended = wait_for_the_end(run, processes, timeout=90)
    result = figures("sent again while alive", imp, ROWS, attempts=ended.attempts)
    assert (ended.status, ended.attempts, ended.worker.split("@")[0]) == ("succeeded", 2, "w2")
    assert (result["runs"], result["records"], result["lost_rows"], result["wrong_rows"]) == (
        1, ROWS, 0, 0,
    )  # fmt: skip
    assert (ended.rows_read, ended.rows_inserted) == (ROWS, ROWS)
    # ... and the first attempt's entry says the sweep sent the run again, why, and that the
    # attempt was alive and stopped, once that attempt was heard from again
    entry = wait_for(
        lambda: _noted_entry(run),
        60,
        what="the first attempt to say it stopped\n" + processes.logs(),
    )
    assert entry["attempt"] == 1
    assert entry["sent_again"].startswith("sent again by the sweep: no heartbeat for ")
    assert entry["ended"] == services.STOPPED_ALIVE
    assert entry["task"] == first_task
    print(f"\n[figures] first attempt's entry: {entry}")
    # ... shown to its owner by the API
    shown = client_for(alice).get(f"{API}/runs/{run.pk}/").json()
    attempts = shown["error_details"]["attempts"]
    assert [a["attempt"] for a in attempts] == [1]
    assert (attempts[0]["sent_again"], attempts[0]["ended"]) == (
        entry["sent_again"],
        services.STOPPED_ALIVE,
    )
    # ... and on the admin's run page
    page = admin_client.get(reverse("admin:schedules_importrun_change", args=[run.pk]))
    html = page.content.decode()
    assert escape(entry["sent_again"]) in html
    assert escape(services.STOPPED_ALIVE) in html
    # ... and the first worker's log says it in a line
    said = "was taken for lost by the sweep while its worker was alive"
    assert said in processes.log_of("worker")


def slow_run_on_a_worker(owner, csv_server, processes, settings, max_retries=3, **env):
    """A worker (`env` on top of the tests' quick settings) well into the download of a run of
    `owner`'s slow file; (the worker, the import, the run)."""
    settings.RUN_LEASE_SECONDS = int(FAST["RUN_LEASE_SECONDS"])  # the sweep's, run here
    worker = processes.start("worker", **FAST, **env)
    wait_for(lambda: pool_children(worker), 30, what="the worker's pool")
    url = csv_server.serve("/big.csv", big_csv(ROWS), chunk_delay=1.0)
    imp = make_import(owner, url, retry_backoff_seconds=1, max_retries=max_retries)
    imp = services.pause_import(imp)
    run = services.enqueue_run(imp, trigger="manual", user=owner)
    wait_for_download(csv_server, run, processes.logs())
    time.sleep(1.5)  # well into the download
    return worker, imp, run


@contextlib.contextmanager
def paused(worker):
    """The whole worker (main process and pool) paused, as one cut off from everything."""
    os.killpg(worker.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.killpg(worker.pid, signal.SIGCONT)


def swept_until(run: ImportRun, status: str, processes) -> None:
    """Run the sweep, pass after pass, until it leaves `run` in `status`."""
    wait_for(
        lambda: maintenance.sweep_runs() and _status(run) == status,
        30,
        interval=0.5,
        what=f"the sweep to leave the run {status}\n" + processes.logs(),
    )


def _status(run: ImportRun) -> str:
    return ImportRun.objects.get(pk=run.pk).status


def _noted_entry(run: ImportRun) -> dict | None:
    details = ImportRun.objects.get(pk=run.pk).error_details
    return next((a for a in details.get("attempts", []) if "ended" in a), None)


def test_a_run_ended_as_lost_while_its_worker_was_alive_gets_none_of_its_rows_and_says_so(
    alice, csv_server, processes, settings
):
    """Its retries spent, the sweep fails the run ("the worker running attempt 1 was lost")
    under the same task: the attempt, alive, went on and committed its 20,000 rows under a run
    that said it failed."""
    # Given a worker importing alice's slow file, her import allowing no retry
    worker, imp, run = slow_run_on_a_worker(alice, csv_server, processes, settings, max_retries=0)

    # When that worker stops answering until the sweep ends the run as lost, then answers again
    with paused(worker):
        swept_until(run, "failed", processes)

    # Then the attempt stops, and none of its rows land
    task = ImportRun.objects.get(pk=run.pk).celery_task_id
    wait_for(
        lambda: _ended_in_log(processes.log_of("worker"), task),
        60,
        what="the attempt's task to end\n" + processes.logs(),
    )
    ended = ImportRun.objects.get(pk=run.pk)
    result = figures("ended as lost while alive", imp, 0, attempts=ended.attempts)
    assert (ended.status, ended.attempts) == ("failed", 1)
    assert ended.error_message.startswith("the worker running attempt 1 was lost")
    assert (result["runs"], result["records"], ended.rows_inserted) == (1, 0, 0)
    # ... and its entry says it was alive and stopped
    entry = _noted_entry(run)
    print(f"\n[figures] its entry: {entry}")
    assert entry is not None, ended.error_details
    assert (entry["attempt"], entry["ended"]) == (1, services.STOPPED_ALIVE_ENDED)


def _ended_in_log(log: str, task: str) -> bool:
    return any(
        f"execute_run[{task}]" in line and (" succeeded in " in line or " raised " in line)
        for line in log.splitlines()
    )
