"""An attempt the sweep took for lost while its worker was alive (paused, cut off for a while)
ends in Flower as the sweep told it, once (flowerend hunt).

The sweep tells Flower the end of an attempt it takes for lost (tasks.lost_tasks.end_lost_task):
FAILURE, in the run's words. The attempt, alive after all, stops when it is heard from again
(its run ended, or sent again, under it), and its task ended SUCCESS with a "cancelled" summary:
Flower let that overwrite the FAILURE, and showed a success for a run the log calls failed
("the worker running attempt 1 was lost"); and where the run was sent again and succeeded,
Flower counted two successes for one run. The task now fails in the run's words, without a
second event.

Real processes: Procfile workers and Flower; the worker is paused (SIGSTOP) mid-download while
the sweep runs as a worker's sweep task does (telling Flower), then let go on.
"""

import pytest

from schedules.models import ImportRun
from tasks import maintenance
from tests.conftest import wait_for
from tests.reliability import FAST, start_flower, wait_for_the_end
from tests.test_a_run_killed_at_its_hard_time_limit_after_its_rows_committed_succeeds_in_flower import (  # noqa: E501
    AUTH,
    _ended_task,
    _task_events_counted,
)
from tests.test_a_run_the_sweep_sent_again_while_its_worker_was_alive_says_so import (
    _ended_in_log,
    _status,
    paused,
    slow_run_on_a_worker,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]

SWEEPER = "sweeper@maintenance"  # the worker whose sweep task tells Flower


def test_a_run_ended_as_lost_while_its_worker_was_alive_fails_once_in_flower(
    alice, csv_server, processes, settings
):
    # Given Flower, and a worker importing alice's slow file, her import allowing no retry
    base = start_flower(processes, AUTH)
    worker, _imp, run = slow_run_on_a_worker(alice, csv_server, processes, settings, max_retries=0)
    task = ImportRun.objects.get(pk=run.pk).celery_task_id

    # When that worker stops answering until the sweep ends the run as lost, then answers again
    with paused(worker):
        swept_until(run, "failed", processes)
    wait_for(
        lambda: _ended_in_log(processes.log_of("worker"), task),
        60, what="the task to end\n" + processes.logs(),
    )  # fmt: skip
    processes.stop(worker)  # (its events all sent)

    # Then Flower shows its task failed in the run's words, told once
    ended = ImportRun.objects.get(pk=run.pk)
    assert ended.status == "failed"
    shown = wait_for(lambda: _ended_task(base, task), 30, what="the task in flower")
    counted = _counted(base)
    print(f"\n[figures] Flower's task events counted: {counted}; the task: {shown['state']}")
    assert shown["state"] == "FAILURE", shown
    assert f"run {run.pk} failed: the worker running attempt 1 was lost" in shown["exception"]
    assert counted == {"task-failed": 1.0}


def test_a_run_sent_again_while_its_worker_was_alive_succeeds_once_in_flower(
    alice, csv_server, processes, settings
):
    # Given Flower, and a worker importing alice's slow file
    base = start_flower(processes, AUTH)
    first, _imp, run = slow_run_on_a_worker(
        alice, csv_server, processes, settings, WORKER_NAME="w1"
    )
    first_task = ImportRun.objects.get(pk=run.pk).celery_task_id

    # When that worker stops answering until the sweep sends the run again, another worker
    # takes it, and the first one answers again
    with paused(first):
        swept_until(run, "retrying", processes)
        second = processes.start("worker", WORKER_NAME="w2", **FAST)
        wait_for(
            lambda: _status(run) == "running", 30, what="w2 to take the run\n" + processes.logs()
        )
    ended = wait_for_the_end(run, processes, timeout=90)
    wait_for(
        lambda: _ended_in_log(processes.log_of("worker"), first_task),
        60, what="w1's task to end\n" + processes.logs(),
    )  # fmt: skip
    processes.stop(first)
    processes.stop(second)

    # Then the run succeeded once: its first task failed as the sweep told, its second succeeded
    assert (ended.status, ended.attempts) == ("succeeded", 2)
    shown = wait_for(lambda: _ended_task(base, first_task), 30, what="the first task in flower")
    counted = _counted(base)
    print(f"\n[figures] Flower's task events counted: {counted}; the first task: {shown['state']}")
    assert shown["state"] == "FAILURE", shown
    assert f"run {run.pk}: the worker running attempt 1 was lost" in shown["exception"]
    second_task = wait_for(lambda: _ended_task(base, ended.celery_task_id), 30, what="the second")
    assert second_task["state"] == "SUCCESS", second_task
    assert counted == {"task-failed": 1.0, "task-succeeded": 1.0}


def swept_until(run: ImportRun, status: str, processes) -> None:
    """The sweep, as a worker's sweep task runs it (telling Flower), until `run` is `status`."""
    wait_for(
        lambda: maintenance.sweep_runs(reporter=SWEEPER) and _status(run) == status,
        30,
        interval=0.5,
        what=f"the sweep to leave the run {status}\n" + processes.logs(),
    )


def _counted(base: str) -> dict[str, float]:
    """Flower's counts of run tasks' final events, by type, over every worker."""
    counted: dict[str, float] = {}
    for line in _task_events_counted(base):
        kind = line.split('type="', 1)[1].split('"', 1)[0]
        counted[kind] = counted.get(kind, 0.0) + float(line.rsplit(" ", 1)[1])
    return counted
