"""A drop folder's file filed away in `processed/` under a name already taken there gets the
number after the highest there (schedules.processed_files): a feed delivered every minute under
one name leaves 43,200 such names within the 30 days' retention, and the move must neither
fail nor try every name from 1."""

from __future__ import annotations

import errno
import os

import pytest

from schedules import processed_files, services
from tests.drop_support import put
from tests.factories import PRODUCTS_CSV, make_import
from tests.importer_support import run_now

pytestmark = pytest.mark.django_db

FILED_BEFORE = 10_000


def delivered_and_read(alice, drop):
    """A run that read `products.csv`, whose import files its files away."""
    path = put(drop / "products.csv", PRODUCTS_CSV)
    imp = make_import(alice, f"file://{path}")
    run = run_now(imp)
    assert run.status == "succeeded", run.error_message
    services.update_import(imp, move_processed=True)
    return imp, run


def test_the_ten_thousand_and_first_file_of_one_name_is_filed_after_the_highest(alice, drop):
    # Given 10,000 earlier deliveries of products.csv in processed/ (a week of a feed filed
    # every minute)
    processed = drop / "processed"
    processed.mkdir()
    for number in range(FILED_BEFORE + 1):
        (processed / (f"products-{number}.csv" if number else "products.csv")).touch()
    (processed / "products-99999x.csv").touch()  # not a number of ours
    imp, run = delivered_and_read(alice, drop)

    # When the run's file is filed away, then it takes the number after the highest
    moved = processed_files.move_processed(imp, run)
    assert moved == str(processed / f"products-{FILED_BEFORE + 1}.csv")
    assert not (drop / "products.csv").exists()
    run.refresh_from_db()
    assert "not_moved" not in run.error_details


def test_a_share_without_hard_links_files_under_the_next_free_name(alice, drop, monkeypatch):
    # Given a share that refuses hard links (some SMB mounts), where the name is taken
    (drop / "processed").mkdir()
    put(drop / "processed" / "products.csv", "an earlier delivery\n")
    imp, run = delivered_and_read(alice, drop)

    def no_hard_links(*args, **kwargs):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_hard_links)

    # When the run's file is filed away, then it is renamed to the next name, the earlier one
    # left as it was
    moved = processed_files.move_processed(imp, run)
    assert moved == str(drop / "processed" / "products-1.csv")
    assert (drop / "processed" / "products-1.csv").read_text() == PRODUCTS_CSV
    assert (drop / "processed" / "products.csv").read_text() == "an earlier delivery\n"
    run.refresh_from_db()
    assert "not_moved" not in run.error_details
