"""A delivery that is a link (allowed: it leads to a file inside the owner's folders) is filed
away itself, into `processed/` beside it, as the README says.

Regression (review of the twenty-seventh round): the move through an opened folder moved the
file the link led to, into a `processed/` beside that file: the link was left in the drop
folder pointing nowhere, and the file the user kept elsewhere (an archive the link was made
from) went to the retention job, which deleted it after PROCESSED_FILE_RETENTION_DAYS.
"""

from __future__ import annotations

import os
import time

import pytest

from tasks.processed_retention import delete_old_processed_files
from tests.drop_support import put
from tests.factories import make_import
from tests.importer_support import run_now

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_linked_delivery_is_filed_beside_it_and_the_file_it_leads_to_stays(alice, drop):
    # Given alice keeps her exports in an archive folder and links each delivery in
    archive = drop / "archive"
    archive.mkdir()
    kept = put(archive / "orders_7.csv", "sku,name,price\nA-7,seven,1.00\n")
    os.symlink(kept, drop / "orders_7.csv")
    imp = make_import(alice, f"file://{drop}/orders_*.csv", move_processed=True)

    # When a run imports it
    run = run_now(imp)

    # Then the delivery is filed into processed/ beside it, nothing dangles in the drop folder,
    # and the file the link led to is where she kept it
    assert run.status == "succeeded", run.error_message
    left = sorted(p.name for p in drop.iterdir() if p.is_symlink() and not p.exists())
    filed = sorted(os.listdir(drop / "processed")) if (drop / "processed").exists() else []
    assert (left, filed, kept.exists()) == ([], ["orders_7.csv"], True), (
        f"dangling in the drop folder: {left}; in processed/: {filed}; "
        f"archive now: {sorted(os.listdir(archive))}"
    )


def test_a_delivery_that_is_a_link_counts_among_those_waiting_behind_a_failed_one(alice, drop):
    # The queue takes it, but "N later deliveries wait behind it" passed over it (review)
    import time

    now = time.time()
    put(drop / "orders_1.csv", bytes(range(256)) * 4, mtime=now - 180)
    archive = drop / "archive"
    archive.mkdir()
    os.symlink(
        put(archive / "orders_2.csv", "sku,name,price\nA-2,two,1.00\n"), drop / "orders_2.csv"
    )
    put(drop / "orders_3.csv", "sku,name,price\nA-3,three,1.00\n", mtime=now - 60)
    imp = make_import(alice, f"file://{drop}/orders_*.csv", move_processed=True)

    failed = run_now(imp)

    assert failed.status == "failed" and failed.source_file.endswith("orders_1.csv")
    assert failed.error_details["waiting_behind"] == 2, failed.error_message


def test_a_filed_link_past_retention_goes_and_the_file_it_leads_to_stays(alice, drop, settings):
    # A delivery that is a link is filed away as the link, and retention deleted no link: a
    # feed delivered as links every minute left half a million a year (review)
    # Given a linked delivery filed away long ago
    archive = drop / "archive"
    archive.mkdir()
    kept = put(archive / "orders_7.csv", "sku,name,price\nA-7,seven,1.00\n")
    os.symlink(kept, drop / "orders_7.csv")
    imp = make_import(alice, f"file://{drop}/orders_*.csv", move_processed=True)
    run = run_now(imp)
    assert run.status == "succeeded", run.error_message
    filed = drop / "processed" / "orders_7.csv"
    assert filed.is_symlink()
    long_ago = time.time() - (settings.PROCESSED_FILE_RETENTION_DAYS + 10) * 86400
    os.utime(filed, (long_ago, long_ago), follow_symlinks=False)

    # When the retention of processed files runs
    delete_old_processed_files()

    # Then the filed link is gone, and the file it led to is where alice keeps it
    assert (filed.is_symlink(), kept.exists()) == (False, True)
