"""Test source and `POST /imports/check` refuse a UTF-8 file (its byte-order mark) on an import
set to a single-byte encoding, in the words a run uses, and suggest utf-8 (engine hunt).

Regression: runs refused it, but the check, which reads the file's start with the same first-
record functions, did not look for the mark: it answered ok, with a first column named
"ï»¿sku" (or said the key column was missing, without saying why). On a utf-8 import
the check kept the mark in the first column's name, which a run leaves out.
"""

import pytest

from schedules.models import ScheduledImport
from tasks.engine.first_record import UTF8_MARKED
from tasks.source_check import inspect_source
from tests.factories import make_import
from tests.importer_support import run_now

pytestmark = pytest.mark.django_db

BODY = "\ufeffname,sku\nCrème,A-1\n".encode()


@pytest.mark.parametrize("encoding", ["cp1252", "latin-1"])
def test_the_check_says_what_a_run_says(alice, csv_server, encoding):
    imp = make_import(alice, csv_server.serve("/p.csv", BODY), encoding=encoding)

    answer = inspect_source(imp)

    assert answer["ok"] is False
    assert answer["problems"] == [UTF8_MARKED]
    assert answer["suggestions"] == {"encoding": "utf-8"}
    assert run_now(imp).error_message == UTF8_MARKED


def test_an_import_not_saved_yet_is_told_too(alice, csv_server):
    # As check_fields builds it from `POST /imports/check`'s fields
    unsaved = ScheduledImport(
        source_url=csv_server.serve("/p.csv", BODY), key_column="sku", encoding="cp1252"
    )

    answer = inspect_source(unsaved)

    assert (answer["problems"], answer["suggestions"]) == ([UTF8_MARKED], {"encoding": "utf-8"})


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig"])
def test_a_utf8_import_reads_it_as_a_run_does(alice, csv_server, encoding):
    # The key first: its name follows the mark, which is no part of it
    body = "\ufeffsku,name\nA-1,Crème\n".encode()
    imp = make_import(alice, csv_server.serve("/p.csv", body), encoding=encoding)

    answer = inspect_source(imp)

    assert answer["problems"] == []
    assert (answer["columns"], answer["key_column_found"]) == (["sku", "name"], True)
    assert answer["rows"] == [["A-1", "Crème"]]
    assert run_now(imp).status == "succeeded"
