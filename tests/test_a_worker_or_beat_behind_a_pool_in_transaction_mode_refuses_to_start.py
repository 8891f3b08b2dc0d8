"""A worker or beat whose DATABASE_URL is a PgBouncer in transaction mode refuses to start, in
words (project/database_pooler.py). It started, took runs and failed them half way as "an
unexpected error in importbeat" ("relation importbeat_raw does not exist" in its log: a run's
staging tables live in its session from one transaction to the next, and the pool gave the next
transaction another session), or ran them by luck while the pool gave it the same session
again. A real PgBouncer, a real worker and beat from the Procfile."""

from __future__ import annotations

import pytest

from schedules import services
from schedules.models import ImportRun
from tests.conftest import wait_for
from tests.factories import PRODUCTS_CSV, make_import
from tests.pgbouncer_support import pgbouncer
from tests.reliability import FAST

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]


@pytest.mark.parametrize("process", ["worker", "beat"])
def test_a_worker_or_beat_behind_a_pool_in_transaction_mode_refuses_to_start_in_words(
    alice, csv_server, processes, process
):
    # Given a PgBouncer in transaction mode in front of the database, and a run of alice's queued
    imp = make_import(alice, csv_server.serve("/p.csv", PRODUCTS_CSV))
    run = services.enqueue_run(imp, trigger="api", user=alice)
    with pgbouncer("transaction") as pool:
        # When a worker (or beat) starts on it
        started = processes.start(process, DATABASE_URL=pool.url, **FAST)

        # Then it exits at once, saying why and what to do, and the run waits for a worker
        wait_for(lambda: started.poll() is not None, 30, what="an exit\n" + processes.logs())
        log = processes.log_of(process)
        assert started.returncode == 1, log
        assert (
            f"importbeat {process} not started: its DATABASE_URL is a connection pool in "
            "transaction mode (PgBouncer's pool_mode = transaction)"
        ) in log
        assert "Point its DATABASE_URL at a pool in session mode or at PostgreSQL itself" in log
        assert "Traceback" not in log
    assert ImportRun.objects.get(pk=run.pk).status == "queued"
