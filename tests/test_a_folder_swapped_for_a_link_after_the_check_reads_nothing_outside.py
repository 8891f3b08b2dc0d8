"""A folder of bob's swapped for a link after the worker checked a drop-folder path reads, lists
and files away nothing of alice's.

Regression (attack hunt, finding 2): tasks.drop_folder.open_file resolved the file's path
(drop_folders.check_inside), checked it lay in the owner's folders, and then opened it by name
with O_NOFOLLOW, which refuses a link in the last part of the path only. Bob, who delivers into
his own folder, renamed his folder `in/` away and put a link `in -> <drop>/alice` in its place
between the two: the open followed the link, and his run imported alice's file of the same
name into his dataset. The processed move checked the delivery's folder the same way and
then opened it by name, and a queue's listing listed its folder by name. Now what was opened
is checked (drop_folders.check_opened, open_folder), not only its name.
"""

from __future__ import annotations

import inspect
import os

import pytest

from schedules import drop_folders
from schedules.models import Record
from tests.drop_support import put
from tests.factories import make_import
from tests.importer_support import run_now

pytestmark = pytest.mark.django_db(transaction=True)

ALICES = "sku,salary\nA-1,91000\nB-2,87000\n"
BOBS = "sku,salary\nZ-9,1\n"


def swap_for_a_link(folder, to) -> None:
    """Bob's move: his folder renamed away and a link to `to` put in its place."""
    if not folder.is_symlink():
        os.rename(folder, folder.with_name(folder.name + ".old"))
        os.symlink(to, folder)


def folder(path):
    path.mkdir(parents=True)
    return path


def called_from(function: str) -> bool:
    return inspect.stack()[2].function == function


def test_a_folder_swapped_for_a_link_after_the_check_reads_nothing_of_alices(
    alice, bob, drop, monkeypatch
):
    # Given alice's delivery in her folder and bob's import of a file in a folder of his own
    put(drop / "orders.csv", ALICES)
    bobs_folder = drop.parent / "bob" / "in"
    bobs_folder.mkdir(parents=True)
    put(bobs_folder / "orders.csv", BOBS)
    imp = make_import(bob, f"file://{bobs_folder}/orders.csv", key_column="sku")

    # When bob's folder becomes a link to alice's right after the run's check of the path
    checked = drop_folders.check_inside

    def check_then_swap(path, folders=None):
        real = checked(path, folders)
        if called_from("open_file"):
            swap_for_a_link(bobs_folder, drop)
        return real

    monkeypatch.setattr(drop_folders, "check_inside", check_then_swap)
    run = run_now(imp)

    # Then his run is refused in the words of a link out, and holds nothing of alice's file
    assert run.status == "failed"
    assert run.error_message == (
        f"{bobs_folder}/orders.csv is a link that leads outside the drop folders"
    )
    assert not Record.objects.filter(dataset=imp.dataset).exists()


def test_a_queues_folder_swapped_for_a_link_after_it_was_located_lists_nothing_of_alices(
    alice, bob, drop, monkeypatch
):
    # Given alice's deliveries and bob's queue of deliveries in a folder of his own
    put(folder(drop / "sub") / "orders_1.csv", ALICES)
    bobs_folder = drop.parent / "bob" / "in"
    put(folder(bobs_folder / "sub") / "orders_1.csv", BOBS)
    imp = make_import(
        bob, f"file://{bobs_folder}/sub/orders_*.csv", key_column="sku", move_processed=True
    )

    # When bob's folder becomes a link to alice's right after the run located the folder
    located = drop_folders.locate

    def locate_then_swap(url, folders=None):
        where = located(url, folders)
        if called_from("open_file"):
            swap_for_a_link(bobs_folder, drop)
        return where

    monkeypatch.setattr(drop_folders, "locate", locate_then_swap)
    run = run_now(imp)

    # Then the run is refused, and alice's delivery is read by no one and stays where it was
    assert run.status == "failed"
    assert "is a link that leads outside the drop folders" in run.error_message
    assert not Record.objects.filter(dataset=imp.dataset).exists()
    assert (drop / "sub" / "orders_1.csv").read_text() == ALICES


def test_a_delivery_folder_swapped_for_a_link_before_the_move_files_nothing_of_alices_away(
    alice, bob, drop, monkeypatch
):
    # Given alice's delivery, and bob's import filing his deliveries away once imported
    put(folder(drop / "sub") / "orders.csv", ALICES)
    bobs_folder = drop.parent / "bob" / "in"
    put(folder(bobs_folder / "sub") / "orders.csv", BOBS)
    imp = make_import(
        bob, f"file://{bobs_folder}/sub/orders.csv", key_column="sku", move_processed=True
    )

    # When bob's folder becomes a link to alice's after the move checked the delivery's folder
    checked = drop_folders.check_inside

    def check_then_swap(path, folders=None):
        real = checked(path, folders)
        if called_from("move_processed") and path == str(bobs_folder / "sub"):
            swap_for_a_link(bobs_folder, drop)
        return real

    monkeypatch.setattr(drop_folders, "check_inside", check_then_swap)
    run = run_now(imp)

    # Then bob's run imported his own file, and alice's delivery was not filed away
    assert run.status == "succeeded"
    keys = set(Record.objects.filter(dataset=imp.dataset).values_list("key", flat=True))
    assert keys == {"Z-9"}
    assert (drop / "sub" / "orders.csv").read_text() == ALICES
    assert not (drop / "sub" / "processed").exists()
    assert run.error_details["not_moved"] == (
        f"{bobs_folder}/sub is a link that leads outside the drop folders"
    )
