"""The database connection is lost after a run's rows and counts committed (while the staging
tables are emptied): the run is finished from its committed counts at once. Before, it was
marked `retrying` ("attempt 1 failed, retrying in 60s") and its task retried, with the
dataset already written, only for the retry to find the committed counts and finish it: a
good run showed as failing through a whole backoff, and Flower counted a retry."""

from __future__ import annotations

import psycopg
import pytest
from django.db import connection

from schedules.models import ImportRun
from tasks import runner
from tasks.engine import pipeline
from tests.factories import PRODUCTS_CSV, make_import
from tests.test_fetch_http_errors import FakeRetry, FakeTask

pytestmark = pytest.mark.django_db(transaction=True)


def terminate_backend(pid: int) -> None:
    """PostgreSQL ends the session `pid`, as a restart or a failover would."""
    params = connection.get_connection_params()
    with psycopg.connect(**params, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s, 5000)", [pid])


def test_a_connection_lost_after_the_commit_finishes_the_run_without_a_retry(
    alice, csv_server, monkeypatch
):
    # Given an import with retries left, whose run loses its database connection once its
    # rows committed, when the run empties its staging tables
    imp = make_import(alice, csv_server.serve("/p.csv", PRODUCTS_CSV), max_retries=3)
    run = ImportRun.objects.create(scheduled_import=imp, trigger="manual")
    release_staging = pipeline.release_staging

    def connection_lost_first(pg: psycopg.Cursor, rows: int) -> None:
        terminate_backend(pg.connection.info.backend_pid)
        release_staging(pg, rows)

    monkeypatch.setattr(pipeline, "release_staging", connection_lost_first)
    task = FakeTask()

    # When a worker executes it
    try:
        runner.execute(run.pk, task)
    except FakeRetry:
        pytest.fail("a run whose rows committed was sent to retry")

    # Then the run ends succeeded from its counts at once, the loss noted among its attempts
    run.refresh_from_db()
    assert (run.status, run.attempts, task.countdowns) == ("succeeded", 1, [])
    assert (run.rows_read, run.rows_inserted, run.rows_failed) == (3, 3, 0)
    assert run.error_message == ""
    [attempt] = run.error_details["attempts"]
    assert attempt["error"].startswith("after its rows were committed: the run lost its connection")
    imp.refresh_from_db()
    assert (imp.successful_runs, imp.failed_runs, imp.consecutive_failures) == (1, 0, 0)
