"""A run that committed its rows moves its drop-folder file to processed/ whichever path ends
it, not only the worker's own finish: the sweep finishing a run whose worker was lost after the
commit, the redelivered message finishing it, a time limit after the commit. Before, those
paths left the file in place and the next tick of a glob import took the same file again. The
move happens after the commit that ends the run, and once."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from schedules import services
from schedules.models import ImportRun
from tasks import maintenance, runner
from tests.drop_support import put
from tests.factories import PRODUCTS_CSV, make_import

pytestmark = pytest.mark.django_db(transaction=True)


def committed_run(owner, drop, name: str = "products_1.csv") -> ImportRun:
    """A `running` run whose rows committed from `drop/name`, then its worker went silent
    before it finished the run (the state a worker killed after its merge leaves)."""
    put(drop / name, PRODUCTS_CSV)
    imp = make_import(owner, f"file://{drop}/products_*.csv", move_processed=True)
    stale = timezone.now() - timedelta(minutes=10)
    return ImportRun.objects.create(
        scheduled_import=imp,
        trigger="schedule",
        status="running",
        attempts=1,
        started_at=stale,
        attempt_started_at=stale,
        heartbeat_at=stale,
        source_file=str(drop / name),
        rows_read=3,
        rows_inserted=3,
        rows_committed_at=stale,
    )


def test_a_run_the_sweep_finishes_after_its_worker_was_lost_moves_its_file(alice, drop):
    # Given a run whose rows committed before its worker was lost
    run = committed_run(alice, drop)

    # When the maintenance sweep finds it
    assert maintenance.sweep_runs()["recovered"] == 1

    # Then the run ends as its rows did, and its file is filed away
    run.refresh_from_db()
    assert run.status == "succeeded", run.error_message
    assert not (drop / "products_1.csv").exists()
    assert (drop / "processed" / "products_1.csv").read_text() == PRODUCTS_CSV


def test_a_redelivered_run_whose_rows_committed_moves_its_file(alice, drop):
    # Given a run whose rows committed before its worker was lost (its lease expired)
    run = committed_run(alice, drop)

    # When its message comes back to a worker
    assert runner.execute(run.pk)["status"] == "succeeded"

    # Then the file is filed away, and the import is not read again
    assert not (drop / "products_1.csv").exists()
    assert (drop / "processed" / "products_1.csv").read_text() == PRODUCTS_CSV


def test_a_time_limit_after_the_commit_moves_the_file_after_the_commit_and_once(alice, drop):
    # Given a run whose rows committed, then its time limit struck
    run = committed_run(alice, drop)
    limit = "the run exceeded its 3600s time limit"

    # When ending it rolls back, the file stays where it is
    with pytest.raises(RuntimeError), transaction.atomic():
        services.finish_run(run, ImportRun.Status.TIMED_OUT, error=limit)
        assert (drop / "products_1.csv").exists()  # not before the commit
        raise RuntimeError("the transaction that ended the run failed")
    assert (drop / "products_1.csv").exists()
    assert not (drop / "processed").exists()

    # When it ends for good, the file moves
    services.finish_run(run, ImportRun.Status.TIMED_OUT, error=limit)
    assert run.status == "succeeded"
    assert (drop / "processed" / "products_1.csv").read_text() == PRODUCTS_CSV

    # And a file delivered later under the same name is not the finished run's to move
    put(drop / "products_1.csv", "sku,name,price\nB-1,Bolt,1.00\n")
    services.finish_run(run, ImportRun.Status.SUCCEEDED)
    assert maintenance.sweep_runs()["recovered"] == 0
    assert (drop / "products_1.csv").exists()
    assert not (drop / "processed" / "products_1-1.csv").exists()


def test_a_committed_retry_cancelled_with_its_import_ends_as_its_rows_did_and_moves_its_file(
    alice, drop
):
    # Given a run whose rows committed, then a failure after the merge sent it to retry
    run = committed_run(alice, drop)
    ImportRun.objects.filter(pk=run.pk).update(status="retrying")

    # When its import is cancelled
    services.cancel_import(run.scheduled_import)

    # Then the run is not cancelled (its rows landed): it ends as they did, its file filed away
    run.refresh_from_db()
    assert run.status == "succeeded", run.error_message
    assert (drop / "processed" / "products_1.csv").read_text() == PRODUCTS_CSV
