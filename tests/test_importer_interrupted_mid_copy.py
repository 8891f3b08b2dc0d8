"""A run that fails while COPY is streaming its file leaves a connection the next query can use.

COPY is cut into statements, each in its own transaction; a failure in the middle of one
(the download breaks off, PostgreSQL drops the connection) must unwind that transaction, or
Django keeps the thread's connection "in an atomic block" and every later query of the
worker fails with "the connection is closed": the run could not even be marked failed.
"""

import pytest
from django.db import connection

from schedules.models import Record
from tests.conftest import Route
from tests.factories import make_import
from tests.importer_support import run_now
from tests.reliability import big_csv, terminate

pytestmark = pytest.mark.django_db(transaction=True)

ROWS = 100_000


def test_a_download_that_breaks_off_mid_copy_fails_the_run_and_the_next_run_lands(
    alice, csv_server
):
    # Given a server that cuts the connection halfway through the file
    body = big_csv(ROWS)
    url = csv_server.serve("/big.csv", body, cut_after=len(body) // 2)
    imp = make_import(alice, url)

    # When the run imports it
    run = run_now(imp)

    # Then the run failed as an interrupted download, and nothing landed
    assert run.status == "failed"
    assert "download" in run.error_message
    assert Record.objects.filter(dataset=imp.dataset).count() == 0

    # And once the server sends the whole file, the next run imports every row
    csv_server.routes["/big.csv"] = Route(body)
    run = run_now(imp)
    assert (run.status, run.rows_inserted) == ("succeeded", ROWS)


def test_a_connection_postgresql_drops_mid_copy_fails_the_run_and_the_next_run_lands(
    alice, csv_server
):
    # Given a file whose third chunk is sent after PostgreSQL dropped the importer's connection
    body = big_csv(ROWS)
    connection.ensure_connection()
    pid = connection.connection.info.backend_pid

    def drop_after_two_chunks(sent: int) -> None:
        if sent == 2 * 64 * 1024:
            terminate(pid)

    url = csv_server.serve("/big.csv", body, after_chunk=drop_after_two_chunks)
    imp = make_import(alice, url)

    # When the run imports it (in this process, on this thread's connection)
    run = run_now(imp)

    # Then the run failed with the database error, and nothing landed
    assert run.status == "failed"
    assert "database" in run.error_message
    assert Record.objects.filter(dataset=imp.dataset).count() == 0

    # And the next run, on a fresh connection, imports every row
    run = run_now(imp)
    assert (run.status, run.rows_inserted) == ("succeeded", ROWS)
