"""A worker behind a PgBouncer in transaction mode that hands out its server sessions in turn
(`server_round_robin = 1`) with two of them open refuses to start, as behind one that hands out
the last used (project/database_pooler.py). It was taken for a pool in session mode and started:
its check asked its first connection, then a second, then the first again, and round robin gave
the second the other session and the first its own back, as a pool in session mode does; then
it took runs and failed them half way (a run's staging tables live from one transaction to the
next). A real PgBouncer, a real worker from the Procfile."""

from __future__ import annotations

import psycopg
import pytest

from schedules import services
from schedules.models import ImportRun
from tests.factories import PRODUCTS_CSV, make_import
from tests.pgbouncer_support import pgbouncer
from tests.reliability import FAST
from tests.test_a_worker_behind_a_busy_pool_in_transaction_mode_refuses_to_start import (
    exits_saying_it_is_behind_a_pool_in_transaction_mode,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]


def test_a_worker_behind_a_round_robin_pool_in_transaction_mode_with_two_sessions_refuses(
    alice, csv_server, processes
):
    # Given a PgBouncer in transaction mode handing out its two server sessions in turn, both
    # open (two clients were in a transaction at once), and a run of alice's queued
    imp = make_import(alice, csv_server.serve("/p.csv", PRODUCTS_CSV))
    run = services.enqueue_run(imp, trigger="api", user=alice)
    with pgbouncer("transaction", server_round_robin=1, default_pool_size=2) as pool:
        clients = [psycopg.connect(pool.url, prepare_threshold=None) for _ in range(2)]
        for client in clients:
            client.execute("SELECT 1")
        for client in clients:
            client.commit()
            client.close()
        assert len(pool.show("servers")) == 2

        # When a worker starts on it
        started = processes.start("worker", DATABASE_URL=pool.url, **FAST)

        # Then it exits at once, saying why, and the run waits for a worker
        exits_saying_it_is_behind_a_pool_in_transaction_mode(started, processes, within=30)
    assert ImportRun.objects.get(pk=run.pk).status == "queued"
