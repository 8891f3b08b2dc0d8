"""A run whose merge waits for a lock another session holds (its dataset's row: a long dataset
deletion, an operator's transaction; its import's row: an edit left open) until its time limit
ends `timed_out` saying it waited for a lock, and whose session held it (tasks/lock_waits.py).

Regression (database hunt): its words said only "exceeded its 3s time limit": not that it spent
that time waiting for a lock, nor who held it, where beat names the session it waited for.

Regression (pgbouncer hunt): behind a PgBouncer in session mode it said only that again. The
words ask PostgreSQL whom the run's session waits for, by the backend id psycopg holds: behind
PgBouncer that id is PgBouncer's own, for which PostgreSQL found no one. A pool process behind a
pooler now notes its server session's id (project/database_pooler.py). A real PgBouncer."""

import contextlib
import time

import pytest

from schedules import services
from schedules.models import ImportRun
from tests.conftest import wait_for
from tests.factories import PRODUCTS_CSV, make_import
from tests.pgbouncer_support import pgbouncer
from tests.reliability import FAST, other_connection

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]


DATASET_ROW = "SELECT 1 FROM schedules_dataset WHERE id = %(dataset)s FOR UPDATE"
IMPORT_ROW = "SELECT 1 FROM schedules_scheduledimport WHERE id = %(import)s FOR UPDATE"


@pytest.mark.parametrize(
    ("locked", "behind_pgbouncer"),
    [(DATASET_ROW, False), (IMPORT_ROW, False), (DATASET_ROW, True)],
    ids=["dataset row", "import row", "dataset row behind pgbouncer in session mode"],
)
def test_a_run_timed_out_waiting_for_a_lock_says_so(
    alice, csv_server, processes, locked, behind_pgbouncer
):
    # Given alice's run queued, and another session holding her dataset's or import's row
    imp = make_import(
        alice, csv_server.serve("/p.csv", PRODUCTS_CSV), timeout_seconds=3, max_retries=0
    )
    run = services.enqueue_run(imp, trigger="manual", user=alice)
    pool = pgbouncer("session") if behind_pgbouncer else contextlib.nullcontext()
    with pool as bouncer, other_connection() as locker:
        locker.execute(locked, {"dataset": imp.dataset_id, "import": imp.pk})

        # When a worker (behind PgBouncer or not) runs it until its time limit
        through = {"DATABASE_URL": bouncer.url} if behind_pgbouncer else {}
        processes.start("worker", **through, **FAST)
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


def test_the_side_connection_asks_with_every_option_of_the_workers_own(settings):
    # Regression (last note): it took host, port, user and password alone, and a server asking
    # for more (sslmode=verify-full, a client certificate) refused it: the words said nothing.
    from django.db import connection

    from tasks import lock_waits

    params = lock_waits.side_connection_params()

    own = connection.get_connection_params()
    assert {key: params[key] for key in own if key != "connect_timeout"} == {
        key: value for key, value in own.items() if key != "connect_timeout"
    }
    assert params["autocommit"] is True and params["connect_timeout"] == 3
