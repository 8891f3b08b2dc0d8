"""A run whose connection to importbeat's database breaks says so in plain words.

psycopg's message ("connection to server at "10.0.0.5", port 5432 failed: ...", "terminating
connection due to administrator command") named the operator's database host and port, and a
library's words, in the run's error, shown to every user of the import. Now the run's message
says what happened and what happens next; the original is logged and kept for staff in
`error_details.traceback` (the admin, the run's API detail), as an unexpected error's is.
"""

import logging

import pytest
from django.conf import settings
from django.db import connection

from tests.api_support import API, client_for
from tests.factories import make_import
from tests.importer_support import run_now
from tests.reliability import big_csv, terminate

pytestmark = pytest.mark.django_db(transaction=True)

ROWS = 100_000
# How psycopg's error is named in a traceback (psycopg.OperationalError, or a subclass such as
# psycopg.errors.AdminShutdown): where it is, staff read psycopg's words.
PSYCOPGS_WORDS = "psycopg."


@pytest.fixture
def dropped(alice, csv_server, caplog):
    """A foreground run (run_import's way) whose connection PostgreSQL ends mid-COPY."""
    connection.ensure_connection()
    pid = connection.connection.info.backend_pid

    def drop_after_two_chunks(sent: int) -> None:
        if sent == 2 * 64 * 1024:
            terminate(pid)

    imp = make_import(
        alice, csv_server.serve("/big.csv", big_csv(ROWS), after_chunk=drop_after_two_chunks)
    )
    with caplog.at_level(logging.WARNING, logger="importbeat.runs"):
        run = run_now(imp)
    logged = [r.getMessage() for r in caplog.records if r.name == "importbeat.runs"]
    # What psycopg said ("server closed the connection unexpectedly", "terminating connection
    # due to administrator command": PostgreSQL's words depend on when the client reads them).
    run.psycopgs_words = next(m for m in logged if "connection lost" in m).partition(": ")[2]
    return run


def test_the_run_says_it_lost_its_database_and_that_it_is_not_retried(dropped):
    assert dropped.status == "failed"
    assert dropped.error_message == (
        "the run lost its connection to importbeat's database; a run started in the "
        "foreground (run_import) is not retried"
    )
    database = settings.DATABASES["default"]
    internals = (database["HOST"], str(database["PORT"] or ""), "psycopg", "terminat", "server")
    for internal in filter(None, internals):
        assert internal not in dropped.error_message


def test_the_worker_log_keeps_psycopgs_own_words(dropped):
    assert "connection" in dropped.psycopgs_words
    # The start of its first line, as the traceback keeps it (the log joins its lines)
    assert dropped.psycopgs_words[:40] in dropped.error_details["traceback"]


def test_staff_read_psycopgs_words_in_the_api_and_the_owner_does_not(
    dropped, alice, django_user_model
):
    staff = django_user_model.objects.create_user("sam", password="x", is_staff=True)

    as_owner = client_for(alice).get(f"{API}/runs/{dropped.pk}/").json()
    as_staff = client_for(staff).get(f"{API}/runs/{dropped.pk}/").json()

    assert PSYCOPGS_WORDS not in str(as_owner)
    assert dropped.psycopgs_words[:40] not in str(as_owner)
    assert as_owner["error_details"]["attempts"][0]["error"] == dropped.error_message
    assert PSYCOPGS_WORDS in as_staff["error_details"]["traceback"]
    assert dropped.psycopgs_words[:40] in as_staff["error_details"]["traceback"]


def test_staff_read_psycopgs_words_in_the_admin(dropped, admin_client):
    html = admin_client.get(f"/admin/schedules/importrun/{dropped.pk}/change/").content.decode()

    assert PSYCOPGS_WORDS in html and dropped.psycopgs_words[:40] in html
