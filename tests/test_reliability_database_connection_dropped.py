"""PostgreSQL drops the worker's connections in the middle of a run (pg_terminate_backend): the
attempt fails as transient, in plain words, the run retries on a fresh connection and finishes,
rows exact."""

import time

import pytest
from django.db import connection

from schedules import services
from schedules.models import ImportRun
from tasks.errors import DATABASE_LOST
from tests.conftest import wait_for
from tests.factories import make_import
from tests.reliability import FAST, big_csv, figures, wait_for_download

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]

ROWS = 20_000


def terminate_other_connections() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return cursor.fetchone()[0]


def test_a_run_whose_database_connection_is_dropped_retries_and_finishes(
    alice, csv_server, processes
):
    # Given a worker importing a slow file
    url = csv_server.serve("/big.csv", big_csv(ROWS), chunk_delay=0.4)
    imp = make_import(alice, url, retry_backoff_seconds=1, retry_backoff_max_seconds=2)
    processes.start("worker", **FAST)
    run = services.enqueue_run(imp, trigger="manual", user=alice)
    wait_for_download(csv_server, run, processes.logs())

    # When PostgreSQL terminates every connection of the worker mid-import
    time.sleep(1)
    terminated = terminate_other_connections()

    # Then the run retries and finishes
    run = wait_for(
        lambda: (
            ImportRun.objects.filter(pk=run.pk)
            .exclude(status__in=["running", "retrying", "queued"])
            .first()
        ),
        60,
        what="the run to end\n" + processes.logs(),
    )
    result = figures(
        "PostgreSQL connections dropped",
        imp,
        ROWS,
        terminated_connections=terminated,
        status=run.status,
        attempts=run.attempts,
    )
    assert terminated >= 1
    assert run.status == "succeeded", run.error_message
    assert run.attempts == 2
    # The failed attempt in plain words (no host, no port, no psycopg text), said to be retried;
    # psycopg's own words kept for staff
    assert run.error_details["attempts"][0]["error"] == DATABASE_LOST
    assert run.error_details["attempts"][0]["retry_in"] >= 0
    assert "psycopg." in run.error_details["traceback"]
    assert result["runs"] == 1
    assert (result["records"], result["lost_rows"], result["wrong_rows"]) == (ROWS, 0, 0)
