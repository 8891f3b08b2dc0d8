"""PostgreSQL drops the worker's connection while it writes a run's outcome, after the rows
committed: the run is never recorded failed, and its counts are those of the attempt that
wrote the rows (issue 16: `failed` "worker lost" with 20,000 rows committed and an alert; with
retries, 0 inserted / 20,000 unchanged for a first load).

The test holds the import's row lock, so the worker's final transaction waits at a known
point, and terminates the backend waiting there (or kills the worker's pool process)."""

import contextlib
import signal
from collections.abc import Iterator

import pytest
from django.db import connection, transaction

from schedules import services
from schedules.models import ImportRun, ScheduledImport
from tests.conftest import wait_for
from tests.factories import make_import
from tests.reliability import FAST, big_csv, figures, pool_children, wait_for_the_end

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]

ROWS = 20_000


def backends_waiting_for_the_import_lock() -> list[int]:
    with connection.cursor() as cursor:
        # Inside a transaction, pg_stat_activity is a snapshot taken at its first read.
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid() AND wait_event_type = 'Lock'"
            # finish_run's read of the run (r) with its import, which locks both
            " AND query LIKE 'SELECT r.%%'"
        )
        return [pid for (pid,) in cursor.fetchall()]


def terminate(pids: list[int]) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) pid", [pids])


@contextlib.contextmanager
def a_run_whose_finish_waits(alice, csv_server, processes) -> Iterator[tuple]:
    """A first load of ROWS rows that no retry may save (max_retries 0), held, after its rows
    committed, in its final transaction by this test's lock on the import's row (released when
    the block ends). Yields (import, run, worker, pids of the waiting backends)."""
    imp = make_import(alice, csv_server.serve("/big.csv", big_csv(ROWS)), max_retries=0)
    worker = processes.start("worker", **FAST)
    run = services.enqueue_run(imp, trigger="manual", user=alice)
    with transaction.atomic():
        ScheduledImport.objects.select_for_update().get(pk=imp.pk)
        wait_for(
            lambda: ImportRun.objects.filter(pk=run.pk, rows_committed_at__isnull=False).exists(),
            60,
            what="the rows to commit\n" + processes.logs(),
        )
        waiting = wait_for(
            backends_waiting_for_the_import_lock, 30, what="the finish to wait\n" + processes.logs()
        )
        yield imp, run, worker, waiting


def outcome(name: str, imp, run: ImportRun, **extra: object) -> dict[str, object]:
    """The run's figures, after asserting what both tests require of it."""
    imp.refresh_from_db()
    result = figures(
        name, imp, ROWS, status=run.status, attempts=run.attempts, inserted=run.rows_inserted,
        unchanged=run.rows_unchanged, failed_runs=imp.failed_runs, **extra,
    )  # fmt: skip
    assert run.status == "succeeded", run.error_message
    assert (run.rows_inserted, run.rows_unchanged) == (ROWS, 0)
    assert (imp.successful_runs, imp.failed_runs, imp.consecutive_failures) == (1, 0, 0)
    assert (result["records"], result["lost_rows"], result["wrong_rows"]) == (ROWS, 0, 0)
    return result


def test_a_connection_dropped_while_the_outcome_is_written_is_retried_on_a_fresh_one(
    alice, csv_server, processes
):
    # Given a run whose rows committed and whose final transaction waits for the import's row
    with a_run_whose_finish_waits(alice, csv_server, processes) as (imp, run, _, waiting):
        # When PostgreSQL terminates that backend in the middle of the final UPDATEs
        terminate(waiting)
        # (the worker reconnects and waits again for the lock)
        wait_for(backends_waiting_for_the_import_lock, 30, what="the retry\n" + processes.logs())

    # Then the run succeeds with the counts of its one attempt, and nothing counts a failure
    run = wait_for_the_end(run, processes)
    outcome("backend terminated during the final UPDATE", imp, run)
    assert run.attempts == 1
    assert "run outcome not written" in processes.logs()


def test_a_worker_lost_after_the_commit_leaves_the_counts_of_the_attempt_that_wrote_the_rows(
    alice, csv_server, processes
):
    # Given a run whose rows committed and whose final transaction waits
    with a_run_whose_finish_waits(alice, csv_server, processes) as (imp, run, worker, _):
        # When the pool process dies there (no retries left: max_retries 0)
        for child in pool_children(worker):
            child.send_signal(signal.SIGKILL)

    # Then the message comes back and the run is finished from the committed counts: not
    # failed ("worker lost"), not re-imported (0 inserted, 20,000 unchanged)
    run = wait_for_the_end(run, processes)
    result = outcome(
        "pool process killed after the commit", imp, run, downloads=csv_server.hits["/big.csv"]
    )
    assert result["downloads"] == 1  # the file was not imported a second time
