"""A queue's choice does not list its drop folder again while nothing was added to it or taken
from it (its modification time is as it was when listed), and lists it again once something
was: a delivery that came between two choices is taken in its place in the order.

Regression (drops hunt, finding 1): every choice listed every name in the folder (about 100 ms
at 100,000 files) even when nothing had changed.
"""

from __future__ import annotations

import os
import time

from tasks import drop_folder
from tasks.source_options import SourceOptions
from tests.drop_support import put

BACKLOG = 50


def nothing_imported(etags: list[str]) -> set[str]:
    return set()


def counting_listings(monkeypatch, folder) -> list[str]:
    """The listings (os.scandir) of `folder` made from now on."""
    listed: list[str] = []
    scandir = os.scandir

    def counted(path=None):
        if path is not None and os.fspath(path) == str(folder):
            listed.append(os.fspath(path))
        return scandir(path) if path is not None else scandir()

    monkeypatch.setattr(os, "scandir", counted)
    return listed


def run_takes(url: str) -> str:
    """The file a run of the queue takes (its choice: tasks.drop_folder._match)."""
    options = SourceOptions(imported_before=nothing_imported, whole=False)
    with drop_folder.open_file(url, options=options) as (stream, _size):
        return stream.source_file


def changed_a_while_ago(folder) -> None:
    """The folder's last change an hour ago, so that its time is trusted to change at the next."""
    then = time.time_ns() - 3600 * 10**9 + 123_456_789
    os.utime(folder, ns=(then, then))


def test_a_choice_lists_the_folder_once_while_nothing_came(drop, monkeypatch):
    # Given a backlog of deliveries, whose folder last changed a while ago
    now = time.time()
    for n in range(BACKLOG):
        put(drop / f"products_{n:03d}.csv", f"delivery {n}\n", mtime=now - 1000 + n)
    changed_a_while_ago(drop)
    url = f"file://{drop}/products_*.csv"
    drop_folder._queues.clear()
    listed = counting_listings(monkeypatch, drop)

    # When ten runs choose their delivery
    chosen = {run_takes(url) for _ in range(10)}

    # Then each chose the oldest, and the folder was listed once (on the old code: ten times)
    assert chosen == {str(drop / "products_000.csv")}
    assert len(listed) == 1
    drop_folder._queues.clear()


def test_a_delivery_that_came_between_two_choices_is_taken_in_its_place(drop, monkeypatch):
    # Given a backlog chosen from once, its folder's time trusted
    now = time.time()
    for n in range(1, BACKLOG):
        put(drop / f"products_{n:03d}.csv", f"delivery {n}\n", mtime=now - 1000 + n)
    changed_a_while_ago(drop)
    url = f"file://{drop}/products_*.csv"
    drop_folder._queues.clear()
    assert run_takes(url) == str(drop / "products_001.csv")
    listed = counting_listings(monkeypatch, drop)

    # When a delivery older than all of them comes (moved in, keeping its time)
    put(drop / "products_000.csv", "delivery 0\n", mtime=now - 2000)

    # Then the next run's choice lists the folder again and takes it first
    assert run_takes(url) == str(drop / "products_000.csv")
    assert len(listed) == 1
    drop_folder._queues.clear()


def test_a_delivery_in_the_same_second_as_the_change_before_it_is_not_missed(drop):
    # Given a folder on a file system that keeps whole seconds (FAT, some shares), listed in
    # the second of its last change
    now = time.time()
    for n in range(1, BACKLOG):
        put(drop / f"products_{n:03d}.csv", f"delivery {n}\n", mtime=now - 1000 + n)
    second = time.time_ns() // 10**9 * 10**9
    os.utime(drop, ns=(second, second))
    url = f"file://{drop}/products_*.csv"
    drop_folder._queues.clear()
    assert run_takes(url) == str(drop / "products_001.csv")

    # When a delivery comes in that same second, which leaves the folder's time as it was
    put(drop / "products_000.csv", "delivery 0\n", mtime=now - 2000)
    os.utime(drop, ns=(second, second))

    # Then the next run's choice still sees it: a time that recent is not trusted
    assert run_takes(url) == str(drop / "products_000.csv")
    drop_folder._queues.clear()
