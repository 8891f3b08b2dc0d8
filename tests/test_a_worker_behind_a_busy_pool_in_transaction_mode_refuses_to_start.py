"""A worker behind a PgBouncer in transaction mode whose server sessions are all busy (a web's
exports, say) refuses to start, as behind an idle one (project/database_pooler.py). Its check's
second connection waited 2 s for a session and, answered by none, took the pool for one in
session mode (one with no session free keeps a second client waiting so): the worker started,
and took runs it failed half way (a run's staging tables live from one transaction to the next).
Now the first connection is asked again: a pool in session mode answers it at once, on the
session it keeps for it; one in transaction mode keeps it waiting too (review2 hunt). A real
PgBouncer, a real worker from the Procfile."""

from __future__ import annotations

import threading

import psycopg
import pytest

from schedules import services
from schedules.models import ImportRun
from tests.conftest import wait_for
from tests.factories import PRODUCTS_CSV, make_import
from tests.pgbouncer_support import pgbouncer
from tests.reliability import FAST

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]

# How long bob's client holds the pool's one session each time: longer than the check waits
# for its second connection, and for its first again (database_pooler.FIRST_ANSWER_SECONDS).
HELD_SECONDS = 5


def exits_saying_it_is_behind_a_pool_in_transaction_mode(started, processes, within: float):
    """The worker `started` exits within `within` seconds, its status 1, its log saying why."""
    wait_for(lambda: started.poll() is not None, within, what="an exit\n" + processes.logs())
    log = processes.log_of("worker")
    assert started.returncode == 1, log
    assert (
        "importbeat worker not started: its DATABASE_URL is a connection pool in "
        "transaction mode (PgBouncer's pool_mode = transaction)"
    ) in log


def test_a_worker_behind_a_busy_pool_in_transaction_mode_refuses_to_start(
    alice, csv_server, processes
):
    # Given a PgBouncer in transaction mode with one server session, which bob's client takes
    # again as soon as another's transaction gives it back, and a run of alice's queued
    imp = make_import(alice, csv_server.serve("/p.csv", PRODUCTS_CSV))
    run = services.enqueue_run(imp, trigger="api", user=alice)
    with pgbouncer("transaction", default_pool_size=1, query_wait_timeout=120) as pool:
        done = threading.Event()

        def bobs_client() -> None:
            with psycopg.connect(pool.url, prepare_threshold=None) as bob:
                while not done.is_set():
                    bob.execute("SELECT 1", prepare=False)
                    done.wait(HELD_SECONDS)
                    bob.commit()

        busy = threading.Thread(target=bobs_client, daemon=True)
        busy.start()
        try:
            # When a worker starts on it
            started = processes.start("worker", DATABASE_URL=pool.url, **FAST)

            # Then it exits, saying why, and the run waits for a worker
            exits_saying_it_is_behind_a_pool_in_transaction_mode(started, processes, within=90)
        finally:
            done.set()
            busy.join(HELD_SECONDS + 5)
    assert ImportRun.objects.get(pk=run.pk).status == "queued"
