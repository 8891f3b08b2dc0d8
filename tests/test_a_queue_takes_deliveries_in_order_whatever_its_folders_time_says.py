"""A queue of deliveries takes them in order whatever its folder's modification time says: each
choice lists the folder.

Regression (review of a cache tried in this round, which skipped the listing while the folder's
time was as listed): where deliveries come while that time, as a worker sees it, stays as it
was (an NFS client's attribute cache serves a folder's stat for up to 60 s, where opening the
folder revalidates it; an SMB or FUSE mount that does not move it; `rsync -a` or `tar x`
setting it back), the queue took the newest of two new deliveries first, and an older delivery
after the newer ones it knew. The folder's time is put back with os.utime after each delivery
here: what such a worker sees.
"""

from __future__ import annotations

import os
import time

from tasks import drop_folder
from tasks.source_options import SourceOptions
from tests.drop_support import put


def nothing_imported(etags: list[str]) -> set[str]:
    return set()


def run_takes(url: str) -> str | None:
    """The file a run of the queue takes (tasks.drop_folder._match), None when none."""
    options = SourceOptions(imported_before=nothing_imported, whole=False)
    try:
        with drop_folder.open_file(url, options=options) as (stream, _size):
            return stream.source_file
    except drop_folder.NothingToImport:
        return None


def folder_time_an_hour_ago(folder) -> int:
    then = time.time_ns() - 3600 * 10**9 + 123_456_789
    os.utime(folder, ns=(then, then))
    return then


def test_two_deliveries_to_an_idle_queue_are_taken_oldest_first(drop):
    # Given a queue that was chosen from while nothing waited (its folder's time trusted)
    then = folder_time_an_hour_ago(drop)
    url = f"file://{drop}/products_*.csv"
    drop_folder._queues.clear()
    try:
        assert run_takes(url) is None

        # When two deliveries come (moved in from a staging folder, keeping their times) and
        # the folder's time, as this worker sees it, is as it was
        now = time.time()
        put(drop / "products_001.csv", "delivery 1\n", mtime=now - 200)
        put(drop / "products_002.csv", "delivery 2\n", mtime=now - 100)
        os.utime(drop, ns=(then, then))

        # Then the next run takes the older one (with the cache: products_002, the newest, and
        # the dataset ended with products_001's older values)
        assert run_takes(url) == str(drop / "products_001.csv")
    finally:
        drop_folder._queues.clear()


def test_an_older_delivery_is_taken_before_the_newer_ones_waiting(drop):
    # Given a backlog chosen from once (its folder's time trusted)
    now = time.time()
    for n in range(2, 6):
        put(drop / f"products_{n:03d}.csv", f"delivery {n}\n", mtime=now - 1000 + n)
    then = folder_time_an_hour_ago(drop)
    url = f"file://{drop}/products_*.csv"
    drop_folder._queues.clear()
    try:
        assert run_takes(url) == str(drop / "products_002.csv")

        # When an older delivery comes (mv from staging, rsync -t) and the folder's time, as
        # this worker sees it, is as it was
        put(drop / "products_001.csv", "delivery 1\n", mtime=now - 2000)
        os.utime(drop, ns=(then, then))

        # Then the next run takes it first, as it did when each choice listed the folder
        assert run_takes(url) == str(drop / "products_001.csv")
    finally:
        drop_folder._queues.clear()
