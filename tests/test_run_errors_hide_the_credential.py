"""A run's message and details hide the import's credential that its source writes back: the
message that lists the file's columns, a bad row's value (whole, or cut inside the secret), the
attempts. They reach the API, the admin, alert e-mails, the callback and, as the task's result,
Flower; a server that wrote the request's headers into the file showed the secret in all of
them (only Test source hid it)."""

from __future__ import annotations

import base64
import logging
from unittest import mock

import pytest
from django.db import DataError

from tasks import runner
from tasks.errors import RunFailed
from tests.echo_support import AWKWARD_TEXT, ECHOED, echo, leaks, sent_forms
from tests.factories import PRODUCTS_CSV, make_import
from tests.importer_support import run_now

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("encryption_key")]

HIDDEN = "[hidden]"
CREDENTIAL = {"kind": "basic", "username": "feed", "password": AWKWARD_TEXT}
# Each column the echo writes, typed so that what it holds is a bad value.
INT_COLUMNS = [{"name": name, "type": "int"} for name in ECHOED]


def test_a_run_that_fails_on_a_header_repeating_the_credential_lists_it_hidden(alice, csv_server):
    # Given an import whose server writes the request's credential as the file's header
    url = echo(csv_server, "/echo.csv", as_header=True)
    imp = make_import(alice, url, credential=CREDENTIAL)

    # When it runs
    run = run_now(imp)

    # Then its message lists the file's columns with the secret hidden, here and in its attempts
    assert run.status == "failed"
    assert run.error_message == (
        "the key column 'sku' is not in the file's columns (Basic [hidden], feed:[hidden], "
        + ", ".join([HIDDEN] * 5)
        + ")"
    )
    assert leaks([run.error_message, run.error_details], sent_forms(CREDENTIAL)) == []
    # ... and so does the failure its task reports (Flower's task list)
    with pytest.raises(RunFailed) as failed:
        runner.task_result(runner.summary(run))
    assert leaks(str(failed.value), sent_forms(CREDENTIAL)) == []


@pytest.mark.parametrize(
    ("pad", "prefix"), [(0, ""), (190, "x" * 190)], ids=["whole", "cut-inside-the-secret"]
)
def test_a_bad_rows_value_repeating_the_credential_is_hidden_in_its_row_error(
    alice, csv_server, pad, prefix
):
    # Given an import whose server writes the request's credential into a row, in columns
    # where it is a bad value (each 190 characters in, for the row error to cut it)
    url = echo(csv_server, "/echo.csv", pad=pad)
    imp = make_import(alice, url, credential=CREDENTIAL, columns=INT_COLUMNS)

    # When it runs
    run = run_now(imp)

    # Then each row error shows where the value held the secret, not the secret
    # (its one row refused: a run whose every row was refused is failed)
    assert run.status == "failed" and run.rows_failed == 1
    shown = {error["column"]: error["value"] for error in run.error_details["rows"]}
    assert shown == {
        "authorization": prefix + "Basic [hidden]",
        "decoded": prefix + "feed:[hidden]",
        **dict.fromkeys(ECHOED[3:], prefix + HIDDEN),
    }
    assert leaks(run.error_details, sent_forms(CREDENTIAL)) == []


def test_an_unexpected_error_quoting_the_credential_keeps_it_out_of_the_traceback_and_the_log(
    alice, csv_server, caplog
):
    # Given an import with a basic credential, and an error no message was written for that
    # quotes what the source sent back (as PostgreSQL quotes a value it refuses)
    imp = make_import(alice, csv_server.serve("/p.csv", PRODUCTS_CSV), credential=CREDENTIAL)
    pair = base64.b64encode(f"feed:{AWKWARD_TEXT}".encode()).decode()
    refused = DataError(f'invalid input syntax for type integer: "Basic {pair}"')

    # When the run meets it
    with mock.patch("tasks.engine.import_run", side_effect=refused), caplog.at_level(logging.INFO):
        run = run_now(imp)

    # Then the traceback kept for staff and the worker's log say where it was, not what
    assert run.status == "failed"
    assert 'integer: "Basic [hidden]"' in run.error_details["traceback"]
    assert 'integer: "Basic [hidden]"' in caplog.text
    assert leaks([run.error_details, caplog.text], sent_forms(CREDENTIAL)) == []
