"""PostgreSQL drops the worker's connection while it writes a run's outcome, after the rows
committed: the run is never recorded failed, and its counts are those of the attempt that
wrote the rows (issue 16: `failed` "worker lost" with 20,000 rows committed and an alert; with
retries, 0 inserted / 20,000 unchanged for a first load).

The test holds the import's row lock, so the worker's final transaction waits at a known
point, and terminates the backend waiting there (or kills the worker's pool process)."""

import signal

import pytest
from django.db import connection, transaction

from schedules import services
from schedules.models import ImportRun, ScheduledImport
from tests.conftest import wait_for
from tests.factories import make_import
from tests.reliability import FAST, big_csv, figures, pool_children

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]

ROWS = 20_000


def backends_waiting_for_the_import_lock() -> list[int]:
    with connection.cursor() as cursor:
        # Inside a transaction, pg_stat_activity is a snapshot taken at its first read.
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid() AND wait_event_type = 'Lock'"
            " AND query LIKE 'SELECT \"schedules_scheduledimport\".%%'"
        )
        return [pid for (pid,) in cursor.fetchall()]


def terminate(pids: list[int]) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) pid", [pids])


def start_run_and_hold_its_finish(alice, csv_server, processes):
    """A first load of ROWS rows that no retry may save (max_retries 0), its finish waiting."""
    url = csv_server.serve("/big.csv", big_csv(ROWS))
    imp = make_import(alice, url, max_retries=0, alert_after_failures=1)
    worker = processes.start("worker", **FAST)
    return imp, worker


def wait_until_the_finish_waits(run: ImportRun, processes) -> list[int]:
    wait_for(
        lambda: ImportRun.objects.filter(pk=run.pk, rows_committed_at__isnull=False).exists(),
        60,
        what="the rows to commit\n" + processes.logs(),
    )
    return wait_for(
        backends_waiting_for_the_import_lock, 30, what="the finish to wait\n" + processes.logs()
    )


def wait_for_the_end(run: ImportRun, processes) -> ImportRun:
    return wait_for(
        lambda: ImportRun.objects.filter(pk=run.pk, finished_at__isnull=False).first(),
        60,
        what="the run to end\n" + processes.logs(),
    )


def test_a_connection_dropped_while_the_outcome_is_written_is_retried_on_a_fresh_one(
    alice, csv_server, processes
):
    # Given a run whose rows committed and whose final transaction waits for the import's row
    imp, _worker = start_run_and_hold_its_finish(alice, csv_server, processes)
    run = services.enqueue_run(imp, trigger="manual", user=alice)
    with transaction.atomic():
        ScheduledImport.objects.select_for_update().get(pk=imp.pk)
        waiting = wait_until_the_finish_waits(run, processes)

        # When PostgreSQL terminates that backend in the middle of the final UPDATEs
        terminate(waiting)
        # (the worker reconnects and waits again for the lock)
        wait_for(backends_waiting_for_the_import_lock, 30, what="the retry\n" + processes.logs())

    # Then the run succeeds with the counts of its one attempt, and nothing counts a failure
    run = wait_for_the_end(run, processes)
    imp.refresh_from_db()
    result = figures(
        "backend terminated during the final UPDATE",
        imp,
        ROWS,
        status=run.status,
        attempts=run.attempts,
        inserted=run.rows_inserted,
        unchanged=run.rows_unchanged,
        failed_runs=imp.failed_runs,
    )
    assert run.status == "succeeded", run.error_message
    assert (run.rows_inserted, run.rows_unchanged, run.attempts) == (ROWS, 0, 1)
    assert (imp.successful_runs, imp.failed_runs, imp.consecutive_failures) == (1, 0, 0)
    assert (result["records"], result["lost_rows"], result["wrong_rows"]) == (ROWS, 0, 0)
    assert "run outcome not written" in processes.logs()


def test_a_worker_lost_after_the_commit_leaves_the_counts_of_the_attempt_that_wrote_the_rows(
    alice, csv_server, processes
):
    # Given a run whose rows committed and whose final transaction waits
    imp, worker = start_run_and_hold_its_finish(alice, csv_server, processes)
    run = services.enqueue_run(imp, trigger="manual", user=alice)
    with transaction.atomic():
        ScheduledImport.objects.select_for_update().get(pk=imp.pk)
        wait_until_the_finish_waits(run, processes)

        # When the pool process dies there (no retries left: max_retries 0)
        for child in pool_children(worker):
            child.send_signal(signal.SIGKILL)

    # Then the message comes back and the run is finished from the committed counts: not
    # failed ("worker lost"), not re-imported (0 inserted, 20,000 unchanged)
    run = wait_for_the_end(run, processes)
    imp.refresh_from_db()
    result = figures(
        "pool process killed after the commit",
        imp,
        ROWS,
        status=run.status,
        attempts=run.attempts,
        inserted=run.rows_inserted,
        unchanged=run.rows_unchanged,
        downloads=csv_server.hits["/big.csv"],
    )
    assert run.status == "succeeded", run.error_message
    assert (run.rows_inserted, run.rows_unchanged) == (ROWS, 0)
    assert result["downloads"] == 1  # the file was not imported a second time
    assert (imp.successful_runs, imp.failed_runs, imp.consecutive_failures) == (1, 0, 0)
    assert (result["records"], result["lost_rows"], result["wrong_rows"]) == (ROWS, 0, 0)
