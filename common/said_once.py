"""Words a process meets again and again (a server away, asked at every request or retry), said
once, then again at most once a minute with how often they were met meanwhile. Shared by
/health's log (schedules.api.health), Flower's broker lines (common.flower_words), a worker's
hand-back line (tasks.runner.hand_back) and Celery's line of it (project.worker_log).

A worker's pool processes fold together: what one of them said, the others do not say again
within the minute. Each folded alone before, and a worker of concurrency 2 said a hand-back's
line twice a minute, one per pool process (words5 hunt). The fold's table lives in memory
shared with the processes forked from the one that made the SaidOnce (a worker's main process,
which imports the tasks and sets its logging up before it forks its pool), so that every pool
process, those billiard forks to replace others too, reads and writes the same table. A lock on
a temporary file (released by the system if a process dies holding it) keeps two processes from
writing it at once; the file has no name (unlinked as made) and takes no room. The table was
the file's own pages before, and a page of a file is only given its disk at its first write: a
fold made while /tmp had room killed its process (SIGBUS) at its first words once /tmp was
full, often the very outage it had to say (reviewC hunt). A process that made its own SaidOnce
after the fork (a gunicorn worker of a web without --preload) folds alone, as before.
time.monotonic() is the system's clock since boot, the same in every process of a host.
"""

from __future__ import annotations

import fcntl
import hashlib
import mmap
import struct
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

# The same words are said again at most this often (project.beat's RedisAway folds alike).
SAY_AGAIN_SECONDS = 60.0
# Distinct words kept at most: past it, the words said longest ago are forgotten.
KEPT = 100
# One slot of the table: the words' hash (0: a free slot), when they were said last, and how
# often they were met since.
_SLOT = struct.Struct("<Qdq")


class SaidOnce:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        # Memory shared with the processes forked from this one (MAP_SHARED, anonymous).
        self._table = mmap.mmap(-1, KEPT * _SLOT.size)
        try:
            self._file: Any = tempfile.TemporaryFile()  # noqa: SIM115 (lives as long as the fold)
        except OSError:
            # No temporary file (a read-only file system, no directory left): no lock between
            # the processes; two writing one slot at once may lose a count.
            self._file = None

    def again(self, words: str) -> str | None:
        """None when `words` were said less than SAY_AGAIN_SECONDS ago (they are counted), else
        what to say after them: how often they were met since they were said last, if ever."""
        key = _hash(words)
        now = time.monotonic()
        with self.lock, self._held():
            free = None
            # The slot of the words said longest ago: taken when no slot is free.
            oldest, oldest_at = 0, now
            for slot in range(KEPT):
                found, said_at, met = _SLOT.unpack_from(self._table, slot * _SLOT.size)
                if found != 0 and said_at < oldest_at:
                    oldest, oldest_at = slot, said_at
                if found == key:
                    if now - said_at < SAY_AGAIN_SECONDS:
                        _SLOT.pack_into(self._table, slot * _SLOT.size, key, said_at, met + 1)
                        return None
                    _SLOT.pack_into(self._table, slot * _SLOT.size, key, now, 0)
                    if met:
                        return f" (met {met} times more in the last {now - said_at:.0f} s)"
                    return ""
                if found == 0 and free is None:
                    free = slot
            if free is None:
                # Full: the words said longest ago are forgotten, not all of them. A long-lived
                # process (a web, a worker) that had met KEPT distinct words in its life forgot
                # them all at the next, the words of an outage said a second ago with them, and
                # said those again at once (reviewC hunt).
                free = oldest
            _SLOT.pack_into(self._table, free * _SLOT.size, key, now, 0)
        return ""

    @contextmanager
    def _held(self) -> Iterator[None]:
        """The table to this process alone meanwhile (its threads: self.lock)."""
        if self._file is None:
            yield
            return
        fcntl.lockf(self._file.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.lockf(self._file.fileno(), fcntl.LOCK_UN)


def _hash(words: str) -> int:
    """The words' slot key: 8 bytes of their hash, never 0 (a free slot)."""
    return int.from_bytes(hashlib.blake2b(words.encode(), digest_size=8).digest(), "little") or 1
