"""An import's lease that Redis brings back from an older snapshot, held by a run that has
ended since, neither skips nor holds back the import's next run.

Regression (snapshot hunt): Redis restarted from a snapshot younger than a lease period
(RUN_LEASE_SECONDS, 60 s) reloads the lease of an attempt that has ended since, with the rest
of its TTL. The import's next run met it taken: under `overlap: skip` it was logged
"skipped: run 12 of this import was in progress", of a run that had ended, and its tick was
lost; under `overlap: queue` it waited for the lease to expire. A lease held by a run that has
ended is now freed by the delivery that meets it (tasks/locks.py).
"""

import pytest
from django.db import OperationalError

from schedules.models import ImportRun
from tasks import locks, runner
from tests.factories import PRODUCTS_CSV, make_import

pytestmark = pytest.mark.django_db(transaction=True)


def worker_task(task_id: str):
    request = type("request", (), {"hostname": "w", "id": task_id})
    return type("task", (), {"request": request})()


@pytest.fixture
def held_by(alice, csv_server, settings):
    """A maker of an import whose lease a run of it in `status` holds, and of its next run."""
    settings.RUN_LEASE_SECONDS = 60
    url = csv_server.serve("/p.csv", PRODUCTS_CSV)

    def make(status: str) -> tuple[ImportRun, ImportRun]:
        imp = make_import(alice, url)
        holder = ImportRun.objects.create(scheduled_import=imp, trigger="manual", status=status)
        assert locks.run_lease(imp.pk, holder.pk).acquire()
        run = ImportRun.objects.create(scheduled_import=imp, trigger="manual", celery_task_id="t-2")
        return holder, run

    return make


def test_the_next_run_starts_though_a_snapshot_brought_back_an_ended_runs_lease(held_by):
    # Given an import whose run 1 has ended, its lease back in Redis as a snapshot taken while
    # it ran reloads it (its key, its token, the rest of its TTL), and the import's next run
    ended, run = held_by("succeeded")

    # When a worker takes the next run
    runner.execute(run.pk, worker_task("t-2"))

    # Then it runs, and leaves the import's lease free
    run.refresh_from_db()
    assert (run.status, run.rows_inserted) == ("succeeded", 3), run.error_message
    assert locks.run_lease_holder(ended.scheduled_import_id) is None


def test_a_lease_of_a_run_still_running_is_left_to_it(held_by):
    # Given run 1 running, its lease held, and the import's next run
    running, run = held_by("running")

    # When a worker takes the next run
    runner.execute(run.pk, worker_task("t-2"))

    # Then it is skipped behind run 1 (overlap: skip), whose lease stays its own
    run.refresh_from_db()
    assert run.status == "skipped"
    assert f"run {running.pk}" in run.error_message
    assert locks.run_lease_holder(running.scheduled_import_id) == running.pk


def test_a_lease_whose_holder_the_database_cannot_tell_stays_taken(held_by, monkeypatch):
    # Given an import whose run 1 has ended, its lease back in Redis, and a database that
    # fails the look at that run
    ended, run = held_by("succeeded")

    def database_away(run_id: int) -> bool:
        raise OperationalError("the database went away")

    monkeypatch.setattr(locks, "_ended", database_away)

    # When the next run asks for the lease, then it is taken, as Redis says (no error raised
    # out of the delivery, which acknowledged its message and left the run queued)
    assert locks.run_lease(run.scheduled_import_id, run.pk).acquire() is False
    assert locks.run_lease_holder(run.scheduled_import_id) == ended.pk
