"""Mode sync keeps the record of a row with the wrong number of fields, wherever its key fell
(engine hunt).

A stray delimiter or a lost field before the key shifts it: the row's field at the key's
position is a piece of another field (" John", "5.00"), and the record the row was meant to
update was deleted although the file still held its key. Every key such a row may name now
counts as present; a key the file truly no longer has is still deleted.
"""

import pytest

from tests.factories import make_import
from tests.importer_support import (  # noqa: F401
    both_paths,
    records,
    row_errors,
    run_now,
    staging_path,
)

pytestmark = pytest.mark.django_db

FIRST = "name,sku,price\nSmith John,A-1,9.99\nDoe Jane,B-2,5.00\nRoe Rick,C-3,1.00\n"


@both_paths
def test_an_unquoted_comma_before_the_key_does_not_delete_that_record(alice, csv_server):
    # Given a sync import that holds A-1, B-2 and C-3
    imp = make_import(alice, csv_server.serve("/p.csv", FIRST), mode="sync")
    assert run_now(imp).status == "succeeded"
    # When the next file writes A-1's name with an unquoted comma (4 fields instead of 3)
    csv_server.serve(
        "/p.csv", "name,sku,price\nSmith, John,A-1,9.99\nDoe Jane,B-2,5.00\nRoe Rick,C-3,1.00\n"
    )

    run = run_now(imp)

    # Then the row is reported, and A-1, whose key the file still has, is kept
    assert run.status == "partial"
    assert row_errors(run) == [(2, None, "expected 3 fields, found 4")]
    assert sorted(records(imp)) == ["A-1", "B-2", "C-3"]
    assert run.rows_deleted == 0


@both_paths
def test_a_missing_field_before_the_key_does_not_delete_that_record(alice, csv_server):
    # Given the same import, and a file whose B-2 row lost its name field (2 fields of 3)
    imp = make_import(alice, csv_server.serve("/p.csv", FIRST), mode="sync")
    assert run_now(imp).status == "succeeded"
    csv_server.serve("/p.csv", "name,sku,price\nSmith John,A-1,9.99\nB-2,5.00\nRoe Rick,C-3,1.00\n")

    run = run_now(imp)

    # Then B-2's row is reported and its record stays: the file does hold B-2
    assert run.status == "partial"
    assert sorted(records(imp)) == ["A-1", "B-2", "C-3"]


@both_paths
def test_a_key_split_by_an_unquoted_comma_does_not_delete_that_record(alice, csv_server):
    # Given records keyed by names that hold a comma, quoted in the first file
    body = 'id,name\n"Smith, John",1\n"Doe, Jane",2\n'
    imp = make_import(alice, csv_server.serve("/p.csv", body), mode="sync", key_column="id")
    assert run_now(imp).status == "succeeded"
    # When the next file forgets to quote one of them
    csv_server.serve("/p.csv", 'id,name\nSmith, John,1\n"Doe, Jane",2\n')

    run = run_now(imp)

    # Then the row is reported and "Smith, John" is kept
    assert run.status == "partial"
    assert sorted(records(imp)) == ["Doe, Jane", "Smith, John"]


@both_paths
def test_a_shifted_row_still_lets_the_keys_the_file_lost_go(alice, csv_server):
    # Given the file keeps A-1 on a shifted row, and no longer has C-3
    imp = make_import(alice, csv_server.serve("/p.csv", FIRST), mode="sync")
    assert run_now(imp).status == "succeeded"
    csv_server.serve("/p.csv", "name,sku,price\nSmith, John,A-1,9.99\nDoe Jane,B-2,5.00\n")

    run = run_now(imp)

    # Then A-1 stays and C-3, which no row names, is deleted
    assert sorted(records(imp)) == ["A-1", "B-2"]
    assert run.rows_deleted == 1


@both_paths
def test_a_one_column_file_keeps_a_key_split_by_an_unquoted_comma(alice, csv_server):
    # Given a one-column sync import whose keys hold a comma, quoted in the first file
    imp = make_import(alice, csv_server.serve("/p.csv", 'sku\n"A,1"\nB-2\n'), mode="sync")
    assert run_now(imp).status == "succeeded"
    # When the next file forgets the quotes
    csv_server.serve("/p.csv", "sku\nA,1\nB-2\n")

    run = run_now(imp)

    # Then the row is reported and "A,1" is kept
    assert run.status == "partial"
    assert sorted(records(imp)) == ["A,1", "B-2"]
