"""Words a process meets again and again (a server away, asked at every request or retry), said
once, then again at most once a minute with how often they were met meanwhile. Shared by
/health's log (schedules.api.health), Flower's broker lines (common.flower_words), a worker's
hand-back line (tasks.runner.hand_back) and Celery's line of it (project.worker_log).

A worker's pool processes fold together: what one of them said, the others do not say again
within the minute. Each folded alone before, and a worker of concurrency 2 said a hand-back's
line twice a minute, one per pool process (words5 hunt). The fold's table lives in a shared
mapping of a temporary file, made where the SaidOnce is (a worker's main process, which imports
the tasks and sets its logging up before it forks its pool), so that every process forked from
it afterwards reads and writes the same table; a lock on that file (released by the system if a
process dies holding it) keeps two processes from writing it at once. A process that made its
own SaidOnce after the fork (a gunicorn worker of a web without --preload) folds alone, as
before. time.monotonic() is the system's clock since boot, the same in every process of a host.
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
# Distinct words kept at most: past it, what was said is forgotten, and said again.
KEPT = 100
# One slot of the table: the words' hash (0: a free slot), when they were said last, and how
# often they were met since.
_SLOT = struct.Struct("<Qdq")


class SaidOnce:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        size = KEPT * _SLOT.size
        try:
            self._file: Any = tempfile.TemporaryFile()  # noqa: SIM115 (lives as long as the fold)
            self._file.truncate(size)
            self._table = mmap.mmap(self._file.fileno(), size)
        except OSError:
            # No temporary file (a read-only file system): a mapping of memory alone, shared
            # all the same; two processes writing one slot at once may lose a count.
            self._file = None
            self._table = mmap.mmap(-1, size)

    def again(self, words: str) -> str | None:
        """None when `words` were said less than SAY_AGAIN_SECONDS ago (they are counted), else
        what to say after them: how often they were met since they were said last, if ever."""
        key = _hash(words)
        now = time.monotonic()
        with self.lock, self._held():
            free = None
            for slot in range(KEPT):
                found, said_at, met = _SLOT.unpack_from(self._table, slot * _SLOT.size)
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
                self._table[:] = bytes(len(self._table))
                free = 0
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
