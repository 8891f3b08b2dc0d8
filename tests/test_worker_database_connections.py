"""A worker keeps its database connection from one run to the next, and its bookkeeping does
not wait for the disk while a run's rows and outcome do (project/worker_connections.py).

Regression: Celery's Django fix-up closed the connections around every task, so each small run
opened a new PostgreSQL session (tests/bench/bench_small_runs.py counted one per run)."""

import pytest
from django.db import connection, connections, transaction

from project import worker_connections
from schedules import services
from schedules.models import ImportRun
from tests.conftest import wait_for
from tests.factories import PRODUCTS_CSV, make_import

pytestmark = pytest.mark.django_db(transaction=True)


def worker_backends() -> set[int]:
    """The PostgreSQL sessions on this database other than this test's own."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
        )
        return {pid for (pid,) in cursor.fetchall()}


@pytest.mark.processes
def test_a_worker_runs_one_import_after_another_on_the_same_sessions(alice, csv_server, processes):
    # Given a worker (two pool processes) and three imports
    imports = [
        make_import(
            alice, csv_server.serve(f"/p{i}.csv", PRODUCTS_CSV), name=f"p{i}", dataset=f"p{i}"
        )
        for i in range(3)
    ]
    processes.start("worker")
    sessions: set[int] = set()

    # When it runs them one after the other
    for imp in imports:
        run = services.enqueue_run(imp, trigger="api", user=alice)
        wait_for(
            lambda run=run: ImportRun.objects.filter(pk=run.pk, status="succeeded").exists(),
            60,
            what="the run to succeed\n" + processes.logs(),
        )
        sessions |= worker_backends()

    # Then the runs shared at most one session per pool process, still open afterwards
    assert 1 <= len(sessions) <= 3  # a pool process each, and the parent's start-up check
    assert worker_backends() & sessions


def test_a_worker_connection_commits_asynchronously_but_a_runs_outcome_waits_for_the_disk(
    settings,
):
    def synchronous_commit() -> str:
        with connection.cursor() as cursor:
            cursor.execute("SHOW synchronous_commit")
            return cursor.fetchone()[0]

    # Given a connection as a worker's pool process opens it
    settings.WORKER_SYNCHRONOUS_COMMIT = "off"
    connection.ensure_connection()
    try:
        worker_connections._session_settings(connection)

        # Then its bookkeeping commits without waiting for the disk
        assert synchronous_commit() == "off"

        # And a transaction that asks to be durable waits for it, that transaction only
        with transaction.atomic():
            services.durable_commit()
            assert synchronous_commit() == "on"
        assert synchronous_commit() == "off"
    finally:
        connection.close()
        vars(connections["default"]).pop("commits_asynchronously", None)
