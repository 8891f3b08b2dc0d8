"""A download's deadline and minimum rate, enforced from a thread beside the reader.

The read timeout bounds one silence, not a download: a server that drips a byte every few
seconds never trips it and keeps a worker slot until the run's own time limit (hours). Nor can
the reader see it: it sits in `recv` until the next byte. So a watchdog looks once a second,
from a thread all the downloads of a process share (common.ticker), and, when the download has
outlived FETCH_TOTAL_TIMEOUT_SECONDS or received less than FETCH_MIN_BYTES_PER_SECOND over a
window of waiting, shuts the connection's socket down, which ends the blocked read at once;
the reader then raises with the watchdog's reason.

The rate counts only the time the reader waits for the server (not the time the importer spends
writing what it got to PostgreSQL), so a slow database is never blamed on the source.
"""

from __future__ import annotations

import socket
import time
from contextlib import suppress
from typing import Any

from common.ticker import Check, Ticker

# The minimum rate is judged over this much waiting for the server, seconds.
RATE_WINDOW_SECONDS = 30.0


class Watchdog:
    def __init__(self, deadline: float, min_rate: float) -> None:
        self.deadline = deadline
        self.min_rate = min_rate
        self.reason = ""
        self.connections: list[Any] = []  # urllib3 connections this download opened
        self._started = time.monotonic()
        self._waited = 0.0  # seconds spent waiting for the server, finished waits
        self._waiting_since: float | None = None
        self._received = 0
        self._window_waited, self._window_received = 0.0, 0
        self._check: Check | None = None

    def start(self) -> Watchdog:
        poll = min(1.0, self.deadline / 4, RATE_WINDOW_SECONDS / 4)
        self._check = _watchdogs.every(poll, self._watch)
        return self

    def stop(self) -> None:
        if self._check is not None:
            self._check.cancel()

    # --- called by the reader -----------------------------------------------------------------

    def begin_wait(self) -> None:
        self._waiting_since = time.monotonic()

    def end_wait(self, received: int) -> None:
        since, self._waiting_since = self._waiting_since, None
        if since is not None:
            self._waited += time.monotonic() - since
        self._received += received

    # --- the watchdogs' thread ----------------------------------------------------------------

    def _waited_now(self) -> float:
        since = self._waiting_since
        return self._waited + (time.monotonic() - since if since is not None else 0.0)

    def _watch(self) -> bool:
        """One look; False once the watchdog has fired (no more looks)."""
        if time.monotonic() - self._started > self.deadline:
            self._fire(
                f"the download took longer than {self.deadline:g}s (FETCH_TOTAL_TIMEOUT_SECONDS)"
            )
            return False
        waited = self._waited_now()
        if waited - self._window_waited >= RATE_WINDOW_SECONDS:
            received = self._received - self._window_received
            if received < self.min_rate * (waited - self._window_waited):
                self._fire(
                    f"the server sent {received} bytes in {waited - self._window_waited:.0f}s, "
                    f"slower than {self.min_rate:g} bytes/s (FETCH_MIN_BYTES_PER_SECOND)"
                )
                return False
            self._window_waited, self._window_received = waited, self._received
        return True

    def _fire(self, reason: str) -> None:
        self.reason = reason
        for connection in self.connections:
            sock = getattr(connection, "sock", None)
            if sock is not None:
                # socket.socket's own shutdown, also for a TLS socket: the reader's thread is
                # inside the SSL object, which SSLSocket.shutdown would drop under it.
                with suppress(OSError):
                    socket.socket.shutdown(sock, socket.SHUT_RDWR)


# Every download of this process is watched from one thread (common.ticker), not one each.
_watchdogs = Ticker("fetch watchdogs")
