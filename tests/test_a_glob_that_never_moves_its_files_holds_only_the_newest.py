"""A drop folder's glob whose files are never filed away (no move_processed) chooses the newest
match holding one at a time, so a run's memory does not grow with a folder never cleaned.

Regression (drops hunt, finding 2): every match's entry and stat were held to take the newest,
about 1 KB a file: 98 MiB a run at 100,000 files (a feed every minute leaves 525,000 a year).
"""

from __future__ import annotations

import os
import time
import tracemalloc

from tasks import drop_folder
from tasks.source_options import SourceOptions

FILES = 20_000


def test_a_glob_that_never_moves_its_files_holds_only_the_newest(drop):
    # Given a folder of 20,000 deliveries never filed away, the newest not the last by name
    now = time.time() - 10 * FILES
    for n in range(FILES):
        path = drop / f"products_{n:05d}.csv"
        path.write_bytes(b"sku\n")
        mtime = now + (FILES if n == 1234 else n)
        os.utime(path, (mtime, mtime))
    url = f"file://{drop}/products_*.csv"

    # When a run chooses its file
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        with drop_folder.open_file(url, options=SourceOptions(whole=False)) as (stream, _size):
            chosen = stream.source_file
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()

    # Then it took the newest, holding far less than a match's worth each (old code: ~20 MiB)
    assert chosen == str(drop / "products_01234.csv")
    assert peak < 2 * 2**20, f"choosing among {FILES} files peaked at {peak / 2**20:.1f} MiB"
