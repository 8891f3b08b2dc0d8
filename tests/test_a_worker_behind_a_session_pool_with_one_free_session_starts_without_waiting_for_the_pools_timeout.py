"""A worker behind a PgBouncer in session mode with one session free starts at once. Its check
for a pool in transaction mode (project/database_pooler.py) asks with two connections; the
second found no session free and waited in PgBouncer's queue until its query_wait_timeout
(120 s by default; a cancel does not end that wait), and the worker's start with it (review1:
15.3 s with 15). It now waits 2 s at most: a pool in transaction mode would have given it the
first connection's idle session. A real PgBouncer, a real worker from the Procfile."""

from __future__ import annotations

import psycopg
import pytest
from celery import current_app

from tests.conftest import wait_for
from tests.pgbouncer_support import pgbouncer
from tests.reliability import FAST

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]


def test_a_worker_behind_a_session_pool_with_one_free_session_starts_at_once(processes):
    # Given a PgBouncer in session mode with two server sessions, one held by a client, and a
    # queue wait of 60 s
    with (
        pgbouncer("session", default_pool_size=2, query_wait_timeout=60) as pool,
        psycopg.connect(pool.url) as holder,
    ):
        holder.execute("SELECT 1")

        # When a worker starts on it
        started = processes.start("worker", DATABASE_URL=pool.url, **FAST)

        # Then it answers well before the pool's queue wait would have ended, started
        wait_for(
            lambda: current_app.control.ping(timeout=0.5),
            30,
            what="the worker's answer\n" + processes.logs(),
        )
        assert started.poll() is None, processes.log_of("worker")
        assert "connection pooler in session mode" in processes.log_of("worker")
