"""A run whose claim waited for its row's lock, and whose lock went as its soft time limit
struck, is put back and runs once its message comes again (tasks.runner._claim_given_up).

Regression (review): the claim's UPDATE is cancelled at the time limit and the message handed
back (runner.WAITED_FOR_THE_DATABASE), but a cancel is not instant: when the lock went first, the
claim landed (the run `running`, attempts 1) and the next delivery took the run for a lost
worker's. With no retries left it ended `failed`, "the worker was lost during each of its 1
attempts", though it never ran; with retries left, a lost attempt was recorded and a retry
spent. The lock here goes the moment the worker's log says the time limit struck (an
operator's transaction, a long admin action or a deletion that ends at that moment)."""

import pytest

from schedules import services
from schedules.models import ImportRun
from tests.conftest import wait_for
from tests.factories import PRODUCTS_CSV, make_import
from tests.reliability import FAST, other_connection

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]


def _claim_waits(watcher) -> bool:
    watcher.rollback()
    found = watcher.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
        " AND query LIKE 'UPDATE schedules_importrun r SET status%%'"
    ).fetchone()
    return bool(found and found[0])


def test_a_claim_that_lands_as_the_time_limit_strikes_is_put_back_and_the_run_runs(
    alice, csv_server, processes
):
    # Given an import with a 3 s timeout and no retries, its queued run's row locked by
    # another session, and a worker whose claim of it waits for that lock
    imp = make_import(
        alice, csv_server.serve("/p.csv", PRODUCTS_CSV), timeout_seconds=3, max_retries=0
    )
    with other_connection() as locker, other_connection() as watcher:
        run = services.enqueue_run(imp, trigger="manual", user=alice)
        locker.execute("SELECT id FROM schedules_importrun WHERE id = %s FOR UPDATE", [run.pk])
        processes.start("worker", **FAST)
        wait_for(lambda: _claim_waits(watcher), 60,
                 what="the claim to wait for the lock\n" + processes.logs())  # fmt: skip

        # When the lock goes as the time limit strikes
        wait_for(lambda: "Soft time limit" in processes.log_of("worker"), 30, interval=0.002,
                 what="the time limit\n" + processes.logs())  # fmt: skip
        locker.rollback()

    # Then the run runs, as the attempt its claim started: no worker was lost
    run = wait_for(
        lambda: ImportRun.objects.filter(pk=run.pk, finished_at__isnull=False).first(),
        60, what="the run to end\n" + processes.logs(),
    )  # fmt: skip
    print(f"\nrun status={run.status} attempts={run.attempts} error={run.error_message!r}")
    assert "was lost" not in run.error_message, run.error_message
    assert (run.status, run.attempts) == ("succeeded", 1), run.error_message


def test_only_the_claim_of_the_task_that_gave_up_is_put_back(alice):
    imp = make_import(alice, "https://example.com/p.csv")
    run = services.enqueue_run(imp, trigger="manual", user=alice)
    before = services.Unclaimed.of(run)
    assert services.claim_run(run, task_id="t-1", worker="w") == services.Claim.CLAIMED

    # Another task's claim, or this task's later one, is not this claim
    assert not services.unclaim(run, before, "t-2")
    assert not services.unclaim(run, services.Unclaimed("queued", 1, None), "t-1")

    assert services.unclaim(run, before, "t-1")
    run.refresh_from_db()
    assert (run.status, run.attempts, run.started_at) == ("queued", 0, None)
