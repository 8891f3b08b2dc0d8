"""A run behind a PgBouncer in session mode whose merge waits for a lock another session holds
until its time limit says whose session held it, as on PostgreSQL itself (tasks/lock_waits.py).

Regression (pgbouncer hunt): it said only "the run exceeded its 3s time limit". The words ask
PostgreSQL whom the run's session waits for, by the backend id psycopg holds: behind PgBouncer
that id is PgBouncer's own, for which PostgreSQL found no one. A pool process behind a pooler
now notes its server session's id (project/database_pooler.py). A real PgBouncer and worker."""

import time

import pytest

from schedules import services
from schedules.models import ImportRun
from tests.conftest import wait_for
from tests.factories import PRODUCTS_CSV, make_import
from tests.pgbouncer_support import pgbouncer
from tests.reliability import FAST, other_connection

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]


def test_a_run_behind_pgbouncer_timed_out_waiting_for_its_datasets_lock_says_whose(
    alice, csv_server, processes
):
    # Given alice's run queued, and another session holding her dataset's row
    imp = make_import(
        alice, csv_server.serve("/p.csv", PRODUCTS_CSV), timeout_seconds=3, max_retries=0
    )
    run = services.enqueue_run(imp, trigger="manual", user=alice)
    with pgbouncer("session") as pool, other_connection() as locker:
        locker.execute("SELECT 1 FROM schedules_dataset WHERE id = %s FOR UPDATE", [imp.dataset_id])

        # When a worker behind PgBouncer runs it until its time limit
        processes.start("worker", DATABASE_URL=pool.url, **FAST)
        wait_for(lambda: "Soft time limit" in processes.log_of("worker"), 30,
                 what="the time limit\n" + processes.logs())  # fmt: skip
        time.sleep(2)
        locker.rollback()
    run = wait_for(
        lambda: ImportRun.objects.filter(pk=run.pk, finished_at__isnull=False).first(),
        60, what="the run to end\n" + processes.logs(),
    )  # fmt: skip

    # Then it says it waited for a lock, and whose session held it
    assert run.status == "timed_out"
    assert run.error_message.startswith(
        "the run exceeded its 3s time limit while it waited for a lock another database session "
        "held (pid "
    ), run.error_message
    assert "idle in transaction for" in run.error_message, run.error_message
