"""The database connection is lost after a run's rows and counts committed (while the staging
tables are emptied): the run is finished from its committed counts at once. Before, it was
marked `retrying` ("attempt 1 failed, retrying in 60s") and its task retried, with the
dataset already written, only for the retry to find the committed counts and finish it: a
good run showed as failing through a whole backoff, and Flower counted a retry.

A file of fewer than SMALL_TABLE_ROWS rows ends its run in the transaction that commits its
rows (services.finish_with_rows, issue 15): the connection lost afterwards finds it ended, and
only the worker's log says what went wrong after its end."""

from __future__ import annotations

import logging

import psycopg
import pytest
from django.db import connection

from schedules.models import ImportRun
from tasks import runner
from tasks.engine import pipeline
from tasks.engine.tables import SMALL_TABLE_ROWS
from tests.bound_task import BoundTask as FakeTask
from tests.bound_task import Retried as FakeRetry
from tests.factories import PRODUCTS_CSV, make_import
from tests.reliability import big_csv

pytestmark = pytest.mark.django_db(transaction=True)


def terminate_backend(pid: int) -> None:
    """PostgreSQL ends the session `pid`, as a restart or a failover would."""
    params = connection.get_connection_params()
    with psycopg.connect(**params, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s, 5000)", [pid])


def losing_the_connection_while_the_work_tables_are_emptied(monkeypatch) -> None:
    release_staging = pipeline.release_staging

    def connection_lost_first(pg: psycopg.Cursor, rows: int) -> None:
        terminate_backend(pg.connection.info.backend_pid)
        release_staging(pg, rows)

    monkeypatch.setattr(pipeline, "release_staging", connection_lost_first)


def executed_once_without_a_retry(run: ImportRun) -> None:
    """Execute `run` as a worker would; it must end succeeded in one attempt, not retried."""
    task = FakeTask()
    try:
        runner.execute(run.pk, task)
    except FakeRetry:
        pytest.fail("a run whose rows committed was sent to retry")
    run.refresh_from_db()
    assert (run.status, run.attempts, task.countdowns) == ("succeeded", 1, [])
    imp = run.scheduled_import
    imp.refresh_from_db()
    assert (imp.successful_runs, imp.failed_runs, imp.consecutive_failures) == (1, 0, 0)


def test_a_connection_lost_after_the_commit_finishes_the_run_without_a_retry(
    alice, csv_server, monkeypatch
):
    # Given an import with retries left of a file big enough for its outcome to be written
    # after its rows, whose run loses its database connection once its rows committed, when
    # the run empties its staging tables
    rows = SMALL_TABLE_ROWS
    imp = make_import(alice, csv_server.serve("/p.csv", big_csv(rows)), max_retries=3)
    run = ImportRun.objects.create(scheduled_import=imp, trigger="manual")
    losing_the_connection_while_the_work_tables_are_emptied(monkeypatch)

    # When a worker executes it, then the run ends succeeded from its counts at once, counted
    # once by its import
    executed_once_without_a_retry(run)

    # And the loss is noted among its attempts
    assert (run.rows_read, run.rows_inserted, run.rows_failed) == (rows, rows, 0)
    assert run.error_message == ""
    [attempt] = run.error_details["attempts"]
    assert attempt["error"].startswith("after its rows were committed: the run lost its connection")


def test_a_connection_lost_after_a_small_run_ended_with_its_rows_leaves_it_ended(
    alice, csv_server, monkeypatch, caplog
):
    # Given an import with retries left of a small file, whose run loses its database
    # connection once its rows committed, when the run empties its staging tables
    imp = make_import(alice, csv_server.serve("/p.csv", PRODUCTS_CSV), max_retries=3)
    run = ImportRun.objects.create(scheduled_import=imp, trigger="manual")
    losing_the_connection_while_the_work_tables_are_emptied(monkeypatch)

    # When a worker executes it, then the run ends succeeded at once, counted once by its
    # import
    with caplog.at_level(logging.WARNING, logger="importbeat.runs"):
        executed_once_without_a_retry(run)

    # And it had ended with its rows, in the same transaction: no failure among its attempts
    assert (run.rows_read, run.rows_inserted, run.rows_failed) == (3, 3, 0)
    assert run.rows_committed_at == run.finished_at
    assert (run.error_message, run.error_details.get("attempts")) == ("", None)
    # And the worker's log says what went wrong after its end
    assert "after its end: the run lost its connection" in caplog.text
