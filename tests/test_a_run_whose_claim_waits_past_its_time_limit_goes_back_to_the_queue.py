"""A run whose row another session holds locked (an operator's `SELECT ... FOR UPDATE`, a long
admin action, a migration) when a worker takes it: its claim waits for the lock, and its time
limit strikes while it waits. Its message goes back to the queue, and the run runs once the
lock is gone.

Regression (database hunt): the task died with "raised unexpected: SoftTimeLimitExceeded" (a
traceback in the worker log, FAILURE in Flower); the run was neither ended nor handed back;
and the claim's UPDATE was left in progress on the pool process's kept connection, so it landed
once the lock went: the run turned `running` with no worker running it, until the sweep called
its worker lost."""

import time

import pytest

from schedules import services
from schedules.models import ImportRun
from tasks import locks
from tests.conftest import wait_for
from tests.factories import PRODUCTS_CSV, make_import
from tests.reliability import FAST, other_connection

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]


def test_a_run_whose_claim_waits_past_its_time_limit_goes_back_to_the_queue(
    alice, csv_server, processes
):
    # Given an import with a 3 s timeout, and its queued run's row locked by another session
    imp = make_import(alice, csv_server.serve("/p.csv", PRODUCTS_CSV), timeout_seconds=3)
    with other_connection() as locker:
        run = services.enqueue_run(imp, trigger="manual", user=alice)
        locker.execute("SELECT id FROM schedules_importrun WHERE id = %s FOR UPDATE", [run.pk])
        locker_pid = locker.info.backend_pid

        # When a worker takes it and its soft time limit (3 s) passes while the claim waits
        processes.start("worker", **FAST)
        wait_for(
            lambda: "Soft time limit" in processes.log_of("worker"), 30,
            what="the time limit to strike\n" + processes.logs(),
        )  # fmt: skip
        time.sleep(2)
        locker.rollback()
    time.sleep(5)

    # Then the run is not `running` with no attempt alive (nobody holds its import's lease)
    run = ImportRun.objects.get(pk=run.pk)
    holder = locks.run_lease_holder(imp.pk)
    log = processes.log_of("worker")
    print(f"\nrun status={run.status} attempts={run.attempts} lease holder={holder} "
          f"error={run.error_message!r}")  # fmt: skip
    assert not (run.status == "running" and holder is None), (
        "the claim landed after its task had ended: `running` with no worker"
    )
    # ... and the worker did not crash on its own time limit: it said why, and the run, given
    # back, runs once the lock is gone
    assert "raised unexpected: SoftTimeLimitExceeded" not in log, log[-2500:]
    assert f"run {run.pk}: its time limit struck while it waited for the database" in log, log
    # ... naming whose session held the lock (it said only "a lock another session holds")
    assert f"(a lock another session holds: pid {locker_pid}: " in log, log
    run = wait_for(
        lambda: ImportRun.objects.filter(pk=run.pk, finished_at__isnull=False).first(),
        30,
        what="the run to run\n" + processes.logs(),
    )
    assert (run.status, run.attempts) == ("succeeded", 1), run.error_message
