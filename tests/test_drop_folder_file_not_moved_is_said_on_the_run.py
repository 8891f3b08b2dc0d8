"""A good run whose drop-folder file cannot be moved to processed/ says so on the run (its
message and `error_details.not_moved`), and that the next run takes the same file again.
Before, only the worker's log said it, and every later tick of the glob re-read the same file
as an unchanged one, without a word to the import's owner."""

from __future__ import annotations

import pytest

from tests.drop_support import append_only, put
from tests.factories import PRODUCTS_CSV, make_import
from tests.importer_support import run_now

# The file moves once the run's end is committed: this test commits, as a worker does.
pytestmark = pytest.mark.django_db(transaction=True)

NOT_MOVED = (
    "its file was not moved to processed/ (processed in the drop folder is a file, not a "
    "folder): the next run of the import takes it again"
)


def test_a_file_that_cannot_be_moved_is_said_on_the_run_each_time(alice, drop):
    # Given a glob import whose processed/ cannot be made (a file has that name)
    put(drop / "processed", "not a folder\n")
    put(drop / "products_1.csv", PRODUCTS_CSV)
    imp = make_import(alice, f"file://{drop}/products_*.csv", move_processed=True)

    # When it runs, and runs again
    first = run_now(imp)
    again = run_now(imp)

    # Then both runs succeed, the file stays, and each run says why and what follows
    assert (first.status, first.rows_inserted) == ("succeeded", 3)
    assert (again.status, again.rows_unchanged) == ("succeeded", 3)
    assert (drop / "products_1.csv").exists()
    for run in (first, again):
        assert run.error_message == NOT_MOVED
        assert run.error_details["not_moved"] == (
            "processed in the drop folder is a file, not a folder"
        )


def test_a_partial_run_keeps_its_failed_rows_in_the_message(alice, drop):
    put(drop / "processed", "not a folder\n")
    put(drop / "products_1.csv", PRODUCTS_CSV + "D-4,Drum\n")
    imp = make_import(alice, f"file://{drop}/products_*.csv", move_processed=True)

    run = run_now(imp)

    assert run.status == "partial"
    assert run.error_message == f"1 rows failed; {NOT_MOVED}"


def test_a_file_that_cannot_leave_its_folder_leaves_no_copy_in_processed(alice, drop):
    # Linked into processed/, then not removable from the drop folder: the link stayed, and
    # every run left one more "filed" copy of a file still waiting
    put(drop / "products_1.csv", PRODUCTS_CSV)
    (drop / "processed").mkdir()
    imp = make_import(alice, f"file://{drop}/products_*.csv", move_processed=True)

    with append_only(drop):
        runs = [run_now(imp) for _ in range(2)]

    assert all("was not moved to processed/" in run.error_message for run in runs)
    assert list((drop / "processed").iterdir()) == []
    assert (drop / "products_1.csv").exists()
