"""A key repeated within one file: the last occurrence wins, each earlier one is reported."""

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


@both_paths
def test_it_reports_a_repeated_key_naming_the_line_that_superseded_it(alice, csv_server):
    # Given A-1 on lines 2, 4 and 5
    body = "sku,price\nA-1,1\nB-2,2\nA-1,3\nA-1,4\n"
    imp = make_import(alice, csv_server.serve("/p.csv", body))

    # When it is imported
    run = run_now(imp)

    # Then line 5 wins, lines 2 and 4 are row errors naming it
    assert run.status == "partial"
    assert records(imp)["A-1"] == {"sku": "A-1", "price": "4"}
    assert row_errors(run) == [
        (2, "sku", "key repeated; superseded by line 5"),
        (4, "sku", "key repeated; superseded by line 5"),
    ]
    assert (run.rows_read, run.rows_inserted, run.rows_failed) == (4, 2, 2)


@both_paths
def test_keys_repeated_across_a_multi_line_field_name_the_right_line(alice, csv_server):
    body = 'sku,notes\nA-1,"first\nsecond"\nA-1,again\n'
    imp = make_import(alice, csv_server.serve("/p.csv", body))

    run = run_now(imp)

    assert row_errors(run) == [(2, "sku", "key repeated; superseded by line 4")]
    assert records(imp)["A-1"]["notes"] == "again"


@both_paths
def test_a_bad_last_occurrence_still_wins_and_nothing_is_written_for_the_key(alice, csv_server):
    # Given the last A-1 row has a value that does not fit its column
    body = "sku,qty\nA-1,1\nA-1,many\n"
    columns = [{"name": "qty", "type": "int"}]
    imp = make_import(alice, csv_server.serve("/p.csv", body), columns=columns)

    run = run_now(imp)

    # Then the earlier row is superseded and the later one is bad: A-1 is not written
    assert run.rows_failed == 2
    assert records(imp) == {}


@both_paths
def test_a_key_repeated_in_a_later_file_also_lets_the_last_occurrence_win(alice, csv_server):
    # Given a dataset that already holds A-1 and B-2
    imp = make_import(alice, csv_server.serve("/p.csv", "sku,price\nA-1,1\nB-2,2\n"))
    run_now(imp)

    # When a new file repeats A-1 (and the repeated key is new to the dataset for C-3)
    csv_server.serve("/p.csv", "sku,price\nA-1,5\nC-3,1\nA-1,6\nC-3,2\nB-2,2\n")
    run = run_now(imp)

    # Then the last occurrences win, the earlier ones are reported
    assert records(imp) == {
        "A-1": {"sku": "A-1", "price": "6"},
        "B-2": {"sku": "B-2", "price": "2"},
        "C-3": {"sku": "C-3", "price": "2"},
    }
    assert row_errors(run) == [
        (2, "sku", "key repeated; superseded by line 4"),
        (3, "sku", "key repeated; superseded by line 5"),
    ]
    assert (run.rows_inserted, run.rows_updated, run.rows_unchanged) == (1, 1, 1)


@both_paths
def test_a_key_repeated_with_unchanged_rows_in_a_later_file_is_still_reported(alice, csv_server):
    # Given a dataset that already holds A-1 and B-2
    imp = make_import(alice, csv_server.serve("/p.csv", "sku,price\nA-1,1\nB-2,2\n"))
    run_now(imp)

    # When a new file repeats A-1 twice as stored, nothing else changing but a new C-3
    csv_server.serve("/p.csv", "sku,price\nA-1,1\nB-2,2\nA-1,1\nC-3,3\n")
    run = run_now(imp)

    # Then the repeat is found though neither A-1 row differs from its record (the search
    # for repeated keys runs only when counting distinct keys says one repeats)
    assert run.status == "partial"
    assert row_errors(run) == [(2, "sku", "key repeated; superseded by line 4")]
    assert (run.rows_inserted, run.rows_unchanged, run.rows_failed) == (1, 2, 1)
    assert records(imp)["C-3"] == {"sku": "C-3", "price": "3"}
