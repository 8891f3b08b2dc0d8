"""A `processed` that the owner made a link files nothing through it (attack hunt): alice, who
may write her own drop folder (her deliveries land there), linked `processed` to bob's folder,
and each of her deliveries was filed into bob's queue, which his next run imported as his own
(with `mode: sync`, his dataset became alice's rows). Filing away works in the folder opened
without following a link (schedules.processed_files)."""

from __future__ import annotations

import os

import pytest

from schedules.models import Record
from tests.drop_support import put
from tests.factories import make_import
from tests.importer_support import run_now

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_processed_link_to_another_users_folder_files_nothing_there(alice, bob, drop):
    bobs = drop.parent / "bob"
    bobs.mkdir()
    put(bobs / "orders_1.csv", "sku,name,price\nB-1,bob's own,1.00\n", mtime=1_000_000_000)
    bob_imp = make_import(bob, f"file://{bobs}/orders_*.csv", name="orders", dataset="orders",
                          move_processed=False, mode="sync")  # fmt: skip
    os.symlink(bobs, drop / "processed")
    put(drop / "orders_9.csv", "sku,name,price\nEVIL,planted by alice,0\n")
    alice_imp = make_import(alice, f"file://{drop}/orders_*.csv", move_processed=True)

    run = run_now(alice_imp)

    assert run.status == "succeeded"
    assert sorted(os.listdir(bobs)) == ["orders_1.csv"]
    assert (drop / "orders_9.csv").exists()
    assert "processed in the drop folder is a link" in run.error_message
    assert run.error_details["not_moved"].startswith("processed in the drop folder is a link")
    run_now(bob_imp)
    keys = set(Record.objects.filter(dataset=bob_imp.dataset).values_list("key", flat=True))
    assert keys == {"B-1"}


def test_a_delivery_is_still_filed_into_a_processed_folder_of_its_own(alice, drop):
    put(drop / "orders_1.csv", "sku,name,price\nA-1,one,1.00\n", mtime=1_000_000_000)
    put(drop / "orders_2.csv", "sku,name,price\nA-2,two,1.00\n", mtime=1_000_000_100)
    (drop / "processed").mkdir()
    put(drop / "processed" / "orders_1.csv", "an older one of the same name\n")
    imp = make_import(alice, f"file://{drop}/orders_*.csv", move_processed=True)

    first, second = run_now(imp), run_now(imp)

    assert (first.status, second.status) == ("succeeded", "succeeded")
    assert sorted(os.listdir(drop / "processed")) == [
        "orders_1-1.csv", "orders_1.csv", "orders_2.csv",
    ]  # fmt: skip
    assert sorted(p.name for p in drop.iterdir() if p.is_file()) == []


def test_a_processed_link_to_nowhere_is_said_to_be_a_link(alice, drop, tmp_path):
    # It was said to be "a file, not a folder" (makedirs' error came first) (review).
    os.symlink(tmp_path / "nowhere", drop / "processed")
    put(drop / "orders_9.csv", "sku,name,price\nA-1,one,0\n")
    imp = make_import(alice, f"file://{drop}/orders_*.csv", move_processed=True)

    run = run_now(imp)

    assert run.error_details["not_moved"].startswith("processed in the drop folder is a link")
