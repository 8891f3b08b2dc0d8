"""Mode sync deletes the records a file no longer has, and only after the whole file parsed."""

import pytest

from tests.factories import make_import
from tests.importer_support import (  # noqa: F401
    both_paths,
    records,
    run_now,
    staging_path,
)

pytestmark = pytest.mark.django_db

FIRST = "sku,name\nA-1,Anvil\nB-2,Bucket\nC-3,Crate\n"


@both_paths
def test_it_deletes_the_keys_the_file_no_longer_has(alice, csv_server):
    # Given a sync import that loaded A-1, B-2 and C-3
    imp = make_import(alice, csv_server.serve("/p.csv", FIRST), mode="sync")
    run_now(imp)
    # When the file drops B-2 and C-3 and adds D-4
    csv_server.serve("/p.csv", "sku,name\nA-1,Anvil\nD-4,Drill\n")

    run = run_now(imp)

    # Then B-2 and C-3 are gone, and the counts say so
    assert sorted(records(imp)) == ["A-1", "D-4"]
    assert (run.rows_inserted, run.rows_unchanged, run.rows_deleted) == (1, 1, 2)


def test_an_upsert_import_never_deletes(alice, csv_server):
    imp = make_import(alice, csv_server.serve("/p.csv", FIRST))
    run_now(imp)
    csv_server.serve("/p.csv", "sku,name\nA-1,Anvil\n")

    run = run_now(imp)

    assert run.rows_deleted == 0
    assert sorted(records(imp)) == ["A-1", "B-2", "C-3"]


@both_paths
def test_a_key_on_a_bad_row_is_kept(alice, csv_server):
    # Given the new file has B-2 on a row with the wrong number of fields
    imp = make_import(alice, csv_server.serve("/p.csv", FIRST), mode="sync")
    run_now(imp)
    csv_server.serve("/p.csv", "sku,name\nA-1,Anvil\nB-2,Bucket,extra\n")

    run = run_now(imp)

    # Then only C-3 is deleted: a typo in a row must not delete its record
    assert run.status == "partial"
    assert sorted(records(imp)) == ["A-1", "B-2"]
    assert run.rows_deleted == 1


def test_a_download_cut_by_the_size_cap_deletes_nothing(alice, csv_server, settings):
    imp = make_import(alice, csv_server.serve("/p.csv", FIRST), mode="sync")
    run_now(imp)
    settings.MAX_IMPORT_BYTES = 1000
    csv_server.serve("/p.csv", "sku,name\nA-1,Anvil\n" + "Z,filler\n" * 500)

    run = run_now(imp)

    assert run.status == "failed"
    assert sorted(records(imp)) == ["A-1", "B-2", "C-3"]


def test_a_file_broken_halfway_deletes_nothing(alice, csv_server):
    # Given the new file has an undecodable byte after its first row
    imp = make_import(alice, csv_server.serve("/p.csv", FIRST), mode="sync")
    run_now(imp)
    csv_server.serve("/p.csv", b"sku,name\nA-1,Anvil\nB-2,Buck\xe9t\n")

    run = run_now(imp)

    assert run.status == "failed"
    assert sorted(records(imp)) == ["A-1", "B-2", "C-3"]
