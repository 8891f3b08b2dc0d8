"""Retention of drop folders' `processed/` files: the hourly retention job deletes the files a
run filed away there once they are older than PROCESSED_FILE_RETENTION_DAYS, dated by the move.
Before, nothing removed them: a folder fed hourly kept every delivery of every year until its
disk was full. Only regular files in the `processed/` folder of an import that files files
away go; never the folder's own files, a folder, a link, nor anything a link leads to."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from common import redis_client
from tasks import maintenance, processed_retention
from tests.drop_support import put, undeletable
from tests.factories import PRODUCTS_CSV, make_import
from tests.importer_support import run_now

pytestmark = pytest.mark.django_db

DAY = 86400
LONG_AGO = time.time() - 40 * DAY
LATELY = time.time() - 2 * DAY


@pytest.fixture
def processed(drop, settings) -> Path:
    """A `processed/` folder in the drop folder, with a retention of 30 days."""
    settings.PROCESSED_FILE_RETENTION_DAYS = 30
    folder = drop / "processed"
    folder.mkdir()
    return folder


@pytest.fixture
def filing(alice, drop):
    """An import that files its files away in `processed/`."""
    return make_import(alice, f"file://{drop}/products_*.csv", move_processed=True)


def test_old_processed_files_go_and_everything_else_stays(filing, drop, processed, tmp_path):
    # Given old and recent files in processed/, old files of the folder's own, an old folder
    # inside processed/, and an old file outside the drop folders
    old = [put(processed / f"products_{n}.csv", "x", mtime=LONG_AGO) for n in range(3)]
    recent = put(processed / "products_9.csv", "x", mtime=LATELY)
    own = put(drop / "products_old.csv", PRODUCTS_CSV, mtime=LONG_AGO)
    inner = processed / "archive"
    inner.mkdir()
    in_inner = put(inner / "products_0.csv", "x", mtime=LONG_AGO)
    os.utime(inner, (LONG_AGO, LONG_AGO))
    outside = put(tmp_path / "outside" / "products_0.csv", "x", mtime=LONG_AGO)

    # When the retention job runs
    result = maintenance.delete_old_runs()

    # Then the old processed files are gone, and nothing else
    assert result["processed_files"] == 3
    assert not any(path.exists() for path in old)
    assert all(path.exists() for path in (recent, own, inner, in_inner, outside))


def test_an_import_that_does_not_file_away_keeps_its_processed_folder(alice, drop, settings):
    # Given a processed/ folder beside the source of an import with move_processed off
    settings.PROCESSED_FILE_RETENTION_DAYS = 30
    make_import(alice, f"file://{drop}/products_*.csv", move_processed=False)
    (drop / "processed").mkdir()
    kept = put(drop / "processed" / "products_1.csv", "x", mtime=LONG_AGO)

    maintenance.delete_old_runs()

    assert kept.exists()


def test_a_retention_of_0_days_keeps_processed_files_for_ever(filing, processed, settings):
    settings.PROCESSED_FILE_RETENTION_DAYS = 0
    kept = put(processed / "products_1.csv", "x", mtime=time.time() - 3000 * DAY)

    assert maintenance.delete_old_runs()["processed_files"] == 0
    assert kept.exists()


def test_a_link_in_processed_goes_by_its_own_age_and_is_never_followed(filing, processed, tmp_path):
    # Given links in processed/: an old one to an old file outside, a new one to a folder
    # outside (a delivery that was a link is filed away as the link: kept for ever, a feed of
    # links every minute left half a million a year)
    target = put(tmp_path / "outside" / "secret.csv", "x", mtime=LONG_AGO)
    (processed / "link.csv").symlink_to(target)
    (processed / "folder").symlink_to(tmp_path / "outside")
    os.utime(processed / "link.csv", (LONG_AGO, LONG_AGO), follow_symlinks=False)

    result = maintenance.delete_old_runs()

    # Then the old link went, itself: what it led to stays; the new one stays
    assert result["processed_files"] == 1
    assert not (processed / "link.csv").is_symlink() and target.exists()
    assert (processed / "folder").is_symlink() and (tmp_path / "outside").is_dir()


@pytest.mark.parametrize("where", ["outside", "inside"])
def test_a_processed_that_is_a_link_is_left_alone_and_said(
    filing, drop, tmp_path, settings, caplog, where
):
    # Given `processed` is a link: out of the drop folders, or to another folder in them
    settings.PROCESSED_FILE_RETENTION_DAYS = 30
    elsewhere = tmp_path / "outside" if where == "outside" else drop / "elsewhere"
    elsewhere.mkdir(exist_ok=True)
    victim = put(elsewhere / "products_1.csv", "x", mtime=LONG_AGO)
    (drop / "processed").symlink_to(elsewhere)

    with caplog.at_level(logging.WARNING, logger="importbeat.retention"):
        result = maintenance.delete_old_runs()

    assert victim.exists()
    assert (result["processed_files"], result["processed_folders_skipped"]) == (0, 1)
    assert f"{drop / 'processed'} left alone" in caplog.text


def test_a_processed_that_is_a_file_is_left_alone(filing, drop, settings):
    settings.PROCESSED_FILE_RETENTION_DAYS = 30
    put(drop / "processed", "x", mtime=LONG_AGO)

    result = maintenance.delete_old_runs()

    assert (drop / "processed").is_file() and result["processed_folders_skipped"] == 1


def test_files_with_odd_names_go_like_any_other(filing, processed):
    names = [b"-rf", b"with space.csv", b"line\nbreak.csv", b"caf\xc3\xa9.csv", b"latin\xe9.csv"]
    for name in names:
        path = os.path.join(os.fsencode(processed), name)
        with open(path, "wb") as file:
            file.write(b"x")
        os.utime(path, (LONG_AGO, LONG_AGO))

    assert maintenance.delete_old_runs()["processed_files"] == len(names)
    assert os.listdir(processed) == []


def test_a_file_that_cannot_be_deleted_is_said_and_the_others_still_go(
    filing, processed, caplog, client, settings
):
    # Given an old processed file the worker may not delete, among others
    others = [put(processed / f"products_{n}.csv", "x", mtime=LONG_AGO) for n in range(3)]
    stuck = put(processed / "products_stuck.csv", "x", mtime=LONG_AGO)

    # When the retention job runs
    with undeletable(stuck), caplog.at_level(logging.INFO, logger="importbeat.retention"):
        result = maintenance.delete_old_runs()
        assert stuck.exists()

    # Then the others are gone, each named in the log, and the stuck one is said with why
    assert (result["processed_files"], result["processed_files_not_deleted"]) == (3, 1)
    assert not any(path.exists() for path in others)
    for path in others:
        assert f"deleted {path.name!r} from {processed}" in caplog.text
    assert "1 old processed file(s)" in caplog.text
    assert "'products_stuck.csv' (operation not permitted)" in caplog.text
    # and /metrics shows it to whoever watches the cluster
    settings.FLOWER_BASIC_AUTH = "ops:pw"
    scraped = client.get("/metrics", HTTP_AUTHORIZATION="Basic b3BzOnB3").content.decode()
    assert "importbeat_processed_files_not_deleted 1.0" in scraped


@pytest.mark.django_db(transaction=True)  # the file moves once the run's end commits
def test_a_run_dates_its_file_at_the_move_so_an_old_delivery_is_kept_its_days(
    filing, drop, settings
):
    # Given a delivery whose file time is a year back (a partner's `rsync -t`)
    settings.PROCESSED_FILE_RETENTION_DAYS = 30
    put(drop / "products_1.csv", PRODUCTS_CSV, mtime=time.time() - 365 * DAY)

    # When a run files it away, and the retention job runs
    assert run_now(filing).status == "succeeded"
    maintenance.delete_old_runs()

    # Then it is kept, dated by its move
    moved = drop / "processed" / "products_1.csv"
    assert moved.read_text() == PRODUCTS_CSV
    assert abs(moved.stat().st_mtime - time.time()) < 60


def test_one_job_deletes_a_bounded_number_and_the_next_the_rest(filing, processed):
    for n in range(5):
        put(processed / f"products_{n}.csv", "x", mtime=LONG_AGO)

    first = processed_retention.delete_old_processed_files(limit=2)
    second = processed_retention.delete_old_processed_files(limit=10)

    assert (first["processed_files"], second["processed_files"]) == (2, 3)
    assert os.listdir(processed) == []


def test_the_jobs_figures_are_kept_for_metrics(filing, processed):
    put(processed / "products_1.csv", "x", mtime=LONG_AGO)

    processed_retention.delete_old_processed_files()

    kept = redis_client.client().get(redis_client.PROCESSED_RETENTION_KEY)
    assert b'"processed_files": 1' in kept


@pytest.mark.parametrize(
    ("value", "days"), [("", 0), ("0", 0), ("7", 7), (None, 30), ("seven", None), ("-1", None)]
)
def test_the_setting_reads_days_and_refuses_anything_else(value, days):
    env = {k: v for k, v in os.environ.items() if k != "PROCESSED_FILE_RETENTION_DAYS"}
    if value is not None:
        env["PROCESSED_FILE_RETENTION_DAYS"] = value
    code = "from django.conf import settings; print(settings.PROCESSED_FILE_RETENTION_DAYS)"
    done = subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); {code}"],
        env={**env, "DJANGO_SETTINGS_MODULE": "project.settings"},
        capture_output=True,
        text=True,
    )
    if days is None:
        assert done.returncode != 0
        assert "PROCESSED_FILE_RETENTION_DAYS" in done.stderr
        assert "is not a whole number of days" in done.stderr
    else:
        assert done.stdout.strip() == str(days), done.stderr
