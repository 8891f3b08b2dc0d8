"""The processed/ retention job that stops at its limit (DELETE_LIMIT files a job) says that the
rest wait for the next job, in its log, whichever folder it stopped in.

Regression (drops hunt): it said so only when the limit was reached before the next folder:
stopped in the last (or the only) folder, the job left the rest without a word, and its figures
looked like those of a job that cleaned everything.
"""

from __future__ import annotations

import logging
import os
import time

import pytest
from django.utils import timezone

from schedules.models import ProcessedFolder
from tasks import processed_retention

pytestmark = pytest.mark.django_db


def old_files(folder, count: int) -> None:
    folder.mkdir(exist_ok=True)
    then = time.time() - 40 * 86400
    for n in range(count):
        path = folder / f"products_{n:04d}.csv"
        path.write_text("sku\n")
        os.utime(path, (then, then))


def test_a_job_stopped_at_its_limit_in_its_only_folder_says_the_rest_wait(drop, settings, caplog):
    # Given one processed/ folder with 150 files past the retention, and a limit of 100 a job
    settings.PROCESSED_FILE_RETENTION_DAYS = 30
    processed = drop / "processed"
    old_files(processed, 150)
    ProcessedFolder.objects.create(path=str(processed), seen_at=timezone.now())

    # When the job runs
    with caplog.at_level(logging.INFO, logger="importbeat.retention"):
        tally = processed_retention.delete_old_processed_files(limit=100)

    # Then it deletes 100, leaves 50, and says that the rest wait for the next job
    assert tally["processed_files"] == 100
    assert len(list(processed.iterdir())) == 50
    said = [r.getMessage() for r in caplog.records if "deleted '" not in r.getMessage()]
    assert any("next run" in line or "rest" in line for line in said), said


def test_a_job_stopped_at_its_limit_before_another_folder_says_so(drop, settings, caplog):
    # (the case the code covers: the limit reached before the next folder)
    settings.PROCESSED_FILE_RETENTION_DAYS = 30
    first, second = drop / "a" / "processed", drop / "b" / "processed"
    first.parent.mkdir()
    second.parent.mkdir()
    old_files(first, 150)
    old_files(second, 10)
    for folder in (first, second):
        ProcessedFolder.objects.create(path=str(folder), seen_at=timezone.now())
    with caplog.at_level(logging.INFO, logger="importbeat.retention"):
        processed_retention.delete_old_processed_files(limit=100)
    said = [r.getMessage() for r in caplog.records if "deleted '" not in r.getMessage()]
    assert any("the rest at the next run" in line for line in said), said


def test_a_job_that_deleted_exactly_its_limit_and_every_old_file_says_no_rest(
    drop, settings, caplog
):
    # Regression (review): the words went by the count reaching the limit, not by a file left
    # Given one processed/ folder with exactly 100 files past the retention, a limit of 100
    settings.PROCESSED_FILE_RETENTION_DAYS = 30
    processed = drop / "processed"
    old_files(processed, 100)
    ProcessedFolder.objects.create(path=str(processed), seen_at=timezone.now())

    # When the job runs
    with caplog.at_level(logging.INFO, logger="importbeat.retention"):
        tally = processed_retention.delete_old_processed_files(limit=100)

    # Then every old file is gone, and the log does not say that some wait for the next run
    assert tally["processed_files"] == 100
    assert list(processed.iterdir()) == []
    said = [r.getMessage() for r in caplog.records if "deleted '" not in r.getMessage()]
    assert not any("the rest at the next run" in line for line in said), said
