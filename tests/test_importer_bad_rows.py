"""Bad rows are counted and reported with line and reason; the good rows still land (partial)."""

import random
import string

import pytest

from tasks.engine import validate
from tests.factories import make_import
from tests.importer_support import (  # noqa: F401
    both_paths,
    records,
    row_errors,
    run_now,
    staging_path,
)

pytestmark = pytest.mark.django_db


@both_paths
def test_a_row_with_the_wrong_number_of_fields_is_reported_and_the_rest_lands(alice, csv_server):
    # Given a file with one row too long and one too short
    body = "sku,name,price\nA-1,Anvil,10\nB-2,Bucket,3,extra\nC-3,Crate\nD-4,Drill,99\n"
    imp = make_import(alice, csv_server.serve("/p.csv", body))

    # When it is imported
    run = run_now(imp)

    # Then the run is partial, both rows are named, and the good ones landed
    assert run.status == "partial"
    assert (run.rows_read, run.rows_inserted, run.rows_failed) == (4, 2, 2)
    assert row_errors(run) == [
        (3, None, "expected 3 fields, found 4"),
        (4, None, "expected 3 fields, found 2"),
    ]
    assert sorted(records(imp)) == ["A-1", "D-4"]
    assert run.error_message == "2 rows failed"


@both_paths
def test_a_row_with_an_empty_key_is_reported(alice, csv_server):
    body = "sku,name\nA-1,Anvil\n  ,Blank key\n,No key\n"
    imp = make_import(alice, csv_server.serve("/p.csv", body))

    run = run_now(imp)

    assert run.status == "partial"
    assert row_errors(run) == [(3, "sku", "the key is empty"), (4, "sku", "the key is empty")]
    assert sorted(records(imp)) == ["A-1"]


@both_paths
def test_keys_are_trimmed_of_surrounding_whitespace(alice, csv_server):
    imp = make_import(alice, csv_server.serve("/p.csv", "sku,name\n  A-1 ,Anvil\n"))

    run_now(imp)

    assert list(records(imp)) == ["A-1"]


@both_paths
def test_row_errors_are_capped_but_every_bad_row_is_counted(alice, csv_server, monkeypatch):
    # Given more bad rows than the cap (lowered for speed)
    monkeypatch.setattr(validate, "ROW_ERROR_CAP", 5)
    body = "sku,name\n" + "".join(f",bad {i}\n" for i in range(12)) + "A-1,Anvil\n"
    imp = make_import(alice, csv_server.serve("/p.csv", body))

    run = run_now(imp)

    assert run.rows_failed == 12
    assert [line for line, _, _ in row_errors(run)] == [2, 3, 4, 5, 6]
    assert run.rows_inserted == 1


def test_a_missing_key_column_fails_the_run_at_once_naming_the_columns(alice, csv_server):
    imp = make_import(alice, csv_server.serve("/p.csv", "id,name\n1,Anvil\n"))

    run = run_now(imp)

    assert run.status == "failed"
    assert run.attempts == 1
    assert "'sku'" in run.error_message and "id, name" in run.error_message


@both_paths
def test_a_key_too_long_to_index_is_a_bad_row_and_the_others_land(alice, csv_server):
    # A key past what PostgreSQL's index holds failed the whole run at the merge, as a lost
    # connection to the database, retried at every attempt and every tick
    # 3,000 bytes that do not compress (PostgreSQL compresses an index entry that would)
    long_key = "".join(random.Random(1).choices(string.ascii_letters + string.digits, k=3000))
    body = f"sku,name\nA,ok\n{long_key},long\nB,fine\n"
    imp = make_import(alice, csv_server.serve("/p.csv", body))

    run = run_now(imp)

    assert (run.status, run.rows_inserted, run.rows_failed) == ("partial", 2, 1)
    assert row_errors(run) == [(3, "sku", "the key is longer than 2,048 bytes")]
    assert sorted(records(imp)) == ["A", "B"]
