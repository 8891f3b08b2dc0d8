"""One long-lived thread per process for a kind of periodic check that a run needs while it
lives: its lease's renewal (`tasks.locks.Renewer`), its download's watchdog
(`tasks.fetch_watchdog`); and that a streamed response needs while it goes out
(`common.streaming`: a client that stopped reading).

Each check used to start a thread of its own and join it at its end: two thread starts, their
wake-ups and joins for every run, when a 100-row run (some 20 ms) never needs either to fire
(issue 15). A ticker's thread starts with the first check of its process and then waits for
the next check due; a check is a callable called every `interval` seconds until it is
cancelled or answers False. Kinds that must not wait for each other (a renewal's round trips
to Redis and PostgreSQL, a watchdog's verdict) have a ticker each.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import os
import threading
import time
from collections.abc import Callable

logger = logging.getLogger("importbeat.ticker")

# How long cancelling a check waits for its call in progress (a renewal stuck on Redis).
WAIT_SECONDS = 10.0


class Check:
    """A periodic check registered with a ticker; `cancel()` it when what it guards ends."""

    def __init__(self, ticker: Ticker, interval: float, call: Callable[[], bool | None]) -> None:
        self.ticker = ticker
        self.interval = interval
        self.call = call
        self.cancelled = False

    def cancel(self) -> None:
        """No call after this returns: a call in progress is waited for, up to WAIT_SECONDS
        (as long as the thread of its own used to be joined)."""
        self.ticker._cancel(self)


class Ticker:
    def __init__(self, name: str, idle: Callable[[], None] | None = None) -> None:
        self.name = name
        # Called on the ticker's thread whenever no check is left (its database connection).
        self.idle = idle
        self._reset()
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        # A forked pool process has the object but not the parent's thread: it starts its own.
        self._condition = threading.Condition()
        self._due: list[tuple[float, int, Check]] = []
        self._order = itertools.count()
        self._running: Check | None = None
        self._thread: threading.Thread | None = None
        self._wakes_at = 0.0  # when the thread's wait ends (inf: until notified)

    def every(self, interval: float, call: Callable[[], bool | None]) -> Check:
        """Call `call()` every `interval` seconds (the first time one interval from now)."""
        check = Check(self, interval, call)
        due = time.monotonic() + interval
        with self._condition:
            heapq.heappush(self._due, (due, next(self._order), check))
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
                self._thread.start()
            elif due < self._wakes_at:
                # Only a check due before the thread wakes anyway needs it woken: runs come
                # and go far more often than their checks are due.
                self._condition.notify()
        return check

    def _cancel(self, check: Check) -> None:
        with self._condition:
            check.cancelled = True
            if threading.current_thread() is not self._thread:
                self._condition.wait_for(lambda: self._running is not check, WAIT_SECONDS)
            # Dropped here rather than when it would have come due: an hour-long interval
            # must not keep what its callable holds alive for an hour.
            self._due = [entry for entry in self._due if entry[2] is not check]
            heapq.heapify(self._due)

    def _loop(self) -> None:
        while True:
            with self._condition:
                check = self._next()
                self._running = check
            try:
                again = check.call()
            except Exception:
                logger.exception("%s: a check failed", self.name)
                again = True
            with self._condition:
                self._running = None
                if again is not False and not check.cancelled:
                    due = time.monotonic() + check.interval
                    heapq.heappush(self._due, (due, next(self._order), check))
                self._condition.notify_all()

    def _next(self) -> Check:
        """The next check due, once it is (called holding the condition)."""
        while True:
            if not self._due:
                if self.idle is not None:
                    self._condition.release()
                    try:
                        self.idle()
                    finally:
                        self._condition.acquire()
                    if self._due:
                        continue
                self._wakes_at = math.inf
                self._condition.wait()
                continue
            due, _, check = self._due[0]
            if check.cancelled:
                heapq.heappop(self._due)
                continue
            wait = due - time.monotonic()
            if wait <= 0:
                heapq.heappop(self._due)
                self._wakes_at = 0.0
                return check
            self._wakes_at = due
            self._condition.wait(wait)
