"""Test source hides the import's credential in every form a server may repeat it in: a basic
credential's base64 pair as sent (`Authorization: Basic ...` was shown as it came back), and each
secret percent-encoded and JSON-escaped (only the raw secret was hidden). The answer is a task's
result, kept by the result backend and shown in Flower."""

from __future__ import annotations

import pytest

from tasks import source_check
from tests.echo_support import AWKWARD, AWKWARD_TEXT, COLUMNS, echo, leaks, sent_forms
from tests.factories import make_import

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("encryption_key")]

HIDDEN = "[hidden]"
KINDS = {
    # kind: (the credential, the row an echo of its request shows once hidden)
    "basic": (
        {"kind": "basic", "username": "feed", "password": AWKWARD_TEXT},
        ["A-1", "Basic [hidden]", "", "feed:[hidden]", *[HIDDEN] * 5],
    ),
    "bearer": (
        {"kind": "bearer", "token": AWKWARD},
        ["A-1", "Bearer [hidden]", "", "", *[HIDDEN] * 5],
    ),
    "header": (
        {"kind": "header", "name": "X-Api-Key", "value": AWKWARD},
        ["A-1", "", HIDDEN, "", *[HIDDEN] * 5],
    ),
}


@pytest.mark.parametrize(("credential", "row"), KINDS.values(), ids=KINDS.keys())
def test_test_source_hides_each_form_of_the_secret_its_server_writes_back(
    alice, csv_server, credential, row
):
    # Given an import whose server writes the request's credential into the file
    imp = make_import(alice, echo(csv_server, "/echo.csv"), credential=credential)

    # When its source is tested
    answer = source_check.check_source(imp.pk)

    # Then the file reads as it is, with the secret hidden wherever it was written
    assert answer["ok"] and answer["columns"] == COLUMNS, answer
    assert answer["rows"] == [row]
    assert leaks(answer, sent_forms(credential)) == []


def test_test_source_hides_the_secret_in_the_problem_that_lists_the_files_columns(
    alice, csv_server
):
    # Given a server that writes the request's credential as the file's header
    credential = KINDS["basic"][0]
    url = echo(csv_server, "/echo.csv", as_header=True)
    imp = make_import(alice, url, credential=credential)

    # When its source is tested
    answer = source_check.check_source(imp.pk)

    # Then the problem names the columns, the secret hidden in each
    assert answer["ok"] is False
    assert answer["problems"][0].startswith(
        "the key column 'sku' is not in the file's columns (Basic [hidden], feed:[hidden], "
        "[hidden], [hidden]"
    ), answer["problems"]
    assert leaks(answer, sent_forms(credential)) == []
