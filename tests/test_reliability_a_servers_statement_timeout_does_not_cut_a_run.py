"""A `statement_timeout` set for importbeat's database or its user (common hardening: every
session's statements ended after 30 s, say) ended a big file's COPY or merge. The run read "the
run lost its connection to importbeat's database", and each retry met the same end. A worker's
statements now take as long as the longest run may (MAX_TIMEOUT_SECONDS), whatever the
server's default (project/worker_connections.py); the web's keep their own limit
(common/web_statements.py).
"""

from __future__ import annotations

import time

import psycopg
import pytest
from django.core.management import call_command
from django.db import OperationalError, connection

from schedules import services
from schedules.models import ImportRun, Record
from tasks.errors import DATABASE_LOST, STATEMENT_CANCELLED, database_error
from tests.conftest import wait_for
from tests.factories import PRODUCTS_CSV, make_import
from tests.reliability import FAST, big_csv
from tests.test_reliability_disk_full import superuser_session

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]

ROWS = 300_000


@pytest.fixture
def short_statements(processes):
    """New sessions of the test database end a statement after 0.3 s: long for what a worker
    asks besides a run's work, short for a merge of 300,000 rows."""
    name = connection.settings_dict["NAME"]
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER DATABASE \"{name}\" SET statement_timeout = '300ms'")
    try:
        yield
    finally:
        processes.stop_all()
        with connection.cursor() as cursor:
            cursor.execute(f'ALTER DATABASE "{name}" RESET statement_timeout')


def test_a_run_longer_than_the_servers_statement_timeout_ends_whole(
    alice, csv_server, processes, short_statements
):
    # Given a file of 300,000 rows (its merge alone takes longer than 0.3 s)
    source = csv_server.serve("/big.csv", big_csv(ROWS))
    imp = make_import(alice, source, max_retries=0)
    processes.start("worker", **FAST)

    # When it runs
    run = services.enqueue_run(imp, trigger="manual", user=alice)

    # Then it ends whole
    run = wait_for(
        lambda: (
            ImportRun.objects.filter(pk=run.pk).exclude(status__in=["queued", "running"]).first()
        ),
        120,
        what="the run to end\n" + processes.logs(),
    )
    assert (run.status, run.error_message, run.rows_inserted) == ("succeeded", "", ROWS)


def test_a_run_in_the_foreground_is_not_cut_by_the_sessions_statement_timeout(alice, csv_server):
    imp = make_import(alice, csv_server.serve("/big.csv", big_csv(ROWS)), max_retries=0)
    with connection.cursor() as cursor:
        cursor.execute("SET statement_timeout = '300ms'")
    try:
        call_command("run_import", str(imp.pk), "--no-progress")
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET statement_timeout")

    run = ImportRun.objects.get(scheduled_import=imp)
    assert (run.status, run.rows_inserted) == ("succeeded", ROWS)


def test_a_statement_the_database_cancels_all_the_same_is_said_as_such():
    cancelled = psycopg.errors.QueryCanceled("canceling statement due to user request")

    assert str(database_error(OperationalError("the server closed the connection"))) == (
        DATABASE_LOST
    )
    try:
        raise OperationalError("wrapped by Django") from cancelled
    except OperationalError as wrapped:
        assert str(database_error(wrapped)) == STATEMENT_CANCELLED


def test_a_run_waits_for_a_lock_longer_than_the_servers_lock_timeout(alice, csv_server, processes):
    """The same for `lock_timeout`: a run that waited for another session's hold on the
    records' table past the server's limit failed as a lost connection."""
    name = connection.settings_dict["NAME"]
    imp = make_import(alice, csv_server.serve("/p.csv", PRODUCTS_CSV), max_retries=0)
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER DATABASE \"{name}\" SET lock_timeout = '200ms'")
    try:
        processes.start("worker", **FAST)
        wait_for(lambda: "ready." in processes.logs(), 60, what="worker\n" + processes.logs())
        # Given another session holding the records' table for 2 s
        with superuser_session() as other, other.transaction():
            other.execute(f"LOCK TABLE {Record._meta.db_table} IN ACCESS EXCLUSIVE MODE")
            run = services.enqueue_run(imp, trigger="manual", user=alice)
            wait_for(
                lambda: ImportRun.objects.filter(pk=run.pk, status="running").exists(),
                30,
                what="the run to start\n" + processes.logs(),
            )
            time.sleep(2)
        # Then the run waited for it, and ends whole
        run = wait_for(
            lambda: ImportRun.objects.filter(
                pk=run.pk, status__in=ImportRun.FINAL_STATUSES
            ).first(),
            60,
            what="the run to end\n" + processes.logs(),
        )
        assert (run.status, run.error_message, run.rows_inserted) == ("succeeded", "", 3)
    finally:
        processes.stop_all()
        with connection.cursor() as cursor:
            cursor.execute(f'ALTER DATABASE "{name}" RESET lock_timeout')
