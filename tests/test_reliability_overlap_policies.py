"""A tick that comes due while a run of the same import is still running: `overlap: skip` logs
it as a `skipped` run, `overlap: queue` runs it after the first one, never alongside."""

import pytest

from schedules import services
from schedules.models import ImportRun
from tasks import locks
from tests.conftest import wait_for
from tests.factories import make_import
from tests.reliability import FAST, big_csv, figures

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]

ROWS = 5_000


def start_long_run(alice, csv_server, processes, **policy):
    url = csv_server.serve("/big.csv", big_csv(ROWS), chunk_delay=1.5)
    imp = make_import(alice, url, **policy)
    processes.start("worker", **{**FAST, "WORKER_CONCURRENCY": "2"})
    first = services.enqueue_run(imp, trigger="manual", user=alice)
    wait_for(
        lambda: ImportRun.objects.get(pk=first.pk).status == "running",
        30,
        what="the first run to start\n" + processes.logs(),
    )
    return imp, first


def wait_until_done(run, processes) -> ImportRun:
    return wait_for(
        lambda: ImportRun.objects.filter(pk=run.pk, status__in=ImportRun.FINAL_STATUSES).first(),
        60,
        what=f"run {run.pk} to end\n" + processes.logs(),
    )


def test_it_logs_a_skipped_run_for_a_tick_while_a_run_holds_the_lock(alice, csv_server, processes):
    imp, first = start_long_run(alice, csv_server, processes, overlap="skip")

    # When beat dispatches a tick meanwhile
    tick = services.dispatch_scheduled_tick(imp.pk, None)

    tick = wait_until_done(tick, processes)
    first = wait_until_done(first, processes)
    figures("overlap skip", imp, ROWS, tick_status=tick.status, first_status=first.status)
    assert tick.status == "skipped"
    assert f"run {first.pk} of this import was in progress" in tick.error_message
    assert tick.attempts == 0 and tick.started_at is None
    assert first.status == "succeeded"


def test_it_runs_a_queued_tick_after_the_running_one_and_never_alongside(
    alice, csv_server, processes
):
    imp, first = start_long_run(alice, csv_server, processes, overlap="queue")

    tick = services.dispatch_scheduled_tick(imp.pk, None)

    # It says why it waits, and for whom: it was `queued` without a word
    waiting = wait_for(
        lambda: (
            ImportRun.objects.filter(pk=tick.pk, status="queued").exclude(error_message="").first()
        ),
        30,
        what="the tick's note\n" + processes.logs(),
    )
    assert waiting.error_message == (
        f"waiting its turn: run {first.pk} of this import is in progress (overlap: queue; "
        f"skipped if it still waits {imp.timeout_seconds}s after it was queued)"
    )
    tick = wait_until_done(tick, processes)
    first = wait_until_done(first, processes)
    figures(
        "overlap queue",
        imp,
        ROWS,
        tick_status=tick.status,
        waited_s=round((tick.started_at - tick.queued_at).total_seconds(), 1),
    )
    assert (first.status, tick.status) == ("succeeded", "succeeded")
    assert tick.started_at >= first.finished_at
    assert tick.rows_unchanged == ROWS
    assert tick.error_message == ""  # the note went when it started


def test_a_queued_tick_gives_up_when_it_waited_longer_than_the_timeout(
    alice, csv_server, processes
):
    # Given an import whose lease is held by a run that never ends (a stuck holder)
    imp = make_import(
        alice, csv_server.serve("/p.csv", big_csv(10)), overlap="queue", timeout_seconds=2
    )
    stuck = locks.run_lease(imp.pk, run_id=999_999)
    assert stuck.acquire()
    processes.start("worker", **FAST)
    try:
        # When a tick comes due, it waits for the lease ...
        tick = services.dispatch_scheduled_tick(imp.pk, None)

        # ... but no longer than the import's timeout
        tick = wait_until_done(tick, processes)
    finally:
        stuck.release()
    assert tick.status == "skipped"
    assert "run 999999 of this import, longer than its 2s timeout" in tick.error_message
