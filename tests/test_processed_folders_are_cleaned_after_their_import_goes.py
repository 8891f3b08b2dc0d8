"""The files a run filed away in `processed/` are deleted in their time even once no import
files into that folder any more. Before, retention looked only at the folders of the imports
that exist now with `move_processed` on: an import deleted, its `move_processed` turned off or
its source moved left what it had filed away there for ever. A folder importbeat never filed
into is still never cleaned, and nothing outside IMPORT_DROP_DIRS is, after a settings change."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import pytest

from schedules import services
from schedules.models import ProcessedFolder
from tasks import maintenance
from tests.drop_support import put
from tests.factories import PRODUCTS_CSV, make_import
from tests.importer_support import run_now

# The file moves once the run's end commits.
pytestmark = pytest.mark.django_db(transaction=True)

DAY = 86400
LONG_AGO = time.time() - 40 * DAY


@pytest.fixture
def filed(alice, drop, settings) -> tuple:
    """An import that filed one delivery away in drop/processed/ by a real run, the file since
    aged past a retention of 30 days."""
    settings.PROCESSED_FILE_RETENTION_DAYS = 30
    imp = make_import(alice, f"file://{drop}/products_*.csv", move_processed=True)
    put(drop / "products_1.csv", PRODUCTS_CSV)
    assert run_now(imp).status == "succeeded"
    moved = drop / "processed" / "products_1.csv"
    os.utime(moved, (LONG_AGO, LONG_AGO))
    return imp, moved


def test_the_files_of_a_deleted_import_still_go(filed):
    # Given an import that filed a file away, since deleted
    imp, moved = filed
    services.delete_import(imp)

    # When the retention job runs
    result = maintenance.delete_old_runs()

    # Then the old file it filed away is gone all the same
    assert result["processed_files"] == 1
    assert not moved.exists()


def test_the_files_of_an_import_that_stopped_filing_away_still_go(filed):
    imp, moved = filed
    services.update_import(imp, move_processed=False)

    assert maintenance.delete_old_runs()["processed_files"] == 1
    assert not moved.exists()


def test_the_files_left_behind_by_an_import_whose_source_moved_still_go(filed, drop):
    # Given an import whose source moved to another drop folder after it filed a file away
    imp, moved = filed
    (drop / "elsewhere").mkdir()
    services.update_import(imp, source_url=f"file://{drop}/elsewhere/products_*.csv")

    assert maintenance.delete_old_runs()["processed_files"] == 1
    assert not moved.exists()


def test_a_folder_no_longer_in_the_drop_folders_is_left_alone(filed, tmp_path, settings, caplog):
    # Given the operator lists another drop folder instead of the one a run filed into
    imp, moved = filed
    services.delete_import(imp)
    (tmp_path / "other").mkdir()
    settings.IMPORT_DROP_DIRS = [str(tmp_path / "other")]

    # When the retention job runs
    with caplog.at_level(logging.INFO, logger="importbeat.retention"):
        result = maintenance.delete_old_runs()

    # Then nothing there is touched, the log says why, and nothing is said to be wrong
    assert moved.exists()
    assert (result["processed_files"], result["processed_folders_skipped"]) == (0, 0)
    assert f"{moved.parent} left alone: it is no longer in a drop folder" in caplog.text
    # and the folder is cleaned again once the operator lists its drop folder again
    settings.IMPORT_DROP_DIRS = [str(moved.parent.parent)]
    assert maintenance.delete_old_runs()["processed_files"] == 1


def test_a_processed_folder_no_run_filed_into_is_never_cleaned(alice, drop, settings):
    # Given someone's own processed/ folder in a drop folder, and an import that filed nothing
    # there before it was deleted
    settings.PROCESSED_FILE_RETENTION_DAYS = 30
    imp = make_import(alice, f"file://{drop}/products_*.csv", move_processed=False)
    theirs = put(_folder(drop / "processed") / "products_1.csv", "x", mtime=LONG_AGO)
    services.delete_import(imp)

    assert maintenance.delete_old_runs()["processed_files"] == 0
    assert theirs.exists()


def test_a_folder_found_gone_is_forgotten_and_not_cleaned_when_someone_makes_it_again(filed, drop):
    # Given the folder a deleted import filed into, removed by the operator
    imp, moved = filed
    services.delete_import(imp)
    moved.unlink()
    moved.parent.rmdir()

    # When the retention job runs, and someone makes a folder of the same name again
    maintenance.delete_old_runs()
    theirs = put(_folder(drop / "processed") / "products_1.csv", "x", mtime=LONG_AGO)

    # Then the folder is forgotten, and what is there now is not importbeat's to delete
    assert not ProcessedFolder.objects.exists()
    assert maintenance.delete_old_runs()["processed_files"] == 0
    assert theirs.exists()


def test_the_folder_of_an_import_that_files_away_is_kept_in_mind_before_it_goes(
    alice, drop, settings
):
    # Given files in the processed/ folder of an import that files away (filed before importbeat
    # listed the folders runs file into), the import later deleted
    settings.PROCESSED_FILE_RETENTION_DAYS = 30
    imp = make_import(alice, f"file://{drop}/products_*.csv", move_processed=True)
    recent = put(_folder(drop / "processed") / "products_1.csv", "x")
    maintenance.delete_old_runs()
    services.delete_import(imp)

    # When the file is old enough, and the retention job runs
    os.utime(recent, (LONG_AGO, LONG_AGO))
    result = maintenance.delete_old_runs()

    # Then it goes
    assert result["processed_files"] == 1
    assert not recent.exists()


def _folder(path: Path) -> Path:
    path.mkdir()
    return path
