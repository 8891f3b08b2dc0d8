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

A run's download is also ended this way when the run is asked to stop: the run checks for that
as bytes arrive (tasks.engine.progress), and a server gone silent left a cancelled run holding
its worker slot until the rate window or the read timeout ended the wait (29 s, up to 60).
So while the reader has waited a second or more for the server, the watchdog asks
(`stop_if_asked`, one indexed read) once a second, from a thread of its own: a database slow to
answer must not hold back the deadline and rate verdicts.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable
from contextlib import suppress
from typing import Any

from common.ticker import Check, Ticker

from .errors import RunCancelled, TransientImportError

logger = logging.getLogger("importbeat.fetch")

DOWNLOAD = "the download"
# The minimum rate is judged over this much waiting for the server, seconds.
RATE_WINDOW_SECONDS = 30.0
# How often a download that receives nothing asks whether its run was asked to stop, seconds.
CANCEL_LOOK_SECONDS = 1.0


class Watchdog:
    def __init__(
        self, deadline: float, min_rate: float, stop_if_asked: Callable[[], None] | None = None
    ) -> None:
        self.deadline = deadline
        self.min_rate = min_rate
        # Raises RunCancelled once the run was asked to stop (engine.progress.stop_if_cancelled).
        self.stop_if_asked = stop_if_asked
        self.reason = ""
        # What the server is sending, in the watchdog's words: an SFTP glob's listing of its
        # folder comes first, and a slow one was said as "the download" (tasks.sftp).
        self.doing = DOWNLOAD
        self.stopped: RunCancelled | None = None  # the cancel that ended the download
        self.connections: list[Any] = []  # urllib3 connections this download opened
        self._started = time.monotonic()
        self._waited = 0.0  # seconds spent waiting for the server, finished waits
        self._waiting_since: float | None = None
        self._received = 0
        self._window_waited, self._window_received = 0.0, 0
        self._check: Check | None = None
        self._cancel_check: Check | None = None
        self._asking_since: float | None = None

    def start(self) -> Watchdog:
        poll = min(1.0, self.deadline / 4, RATE_WINDOW_SECONDS / 4)
        self._check = _watchdogs.every(poll, self._watch)
        if self.stop_if_asked is not None:
            self._cancel_check = _cancel_looks.every(CANCEL_LOOK_SECONDS, self._look_for_cancel)
        return self

    def stop(self) -> None:
        for check in (self._check, self._cancel_check):
            if check is not None:
                check.cancel()

    def failure(self) -> Exception:
        """What the reader raises once the watchdog has fired: the run's cancel, in the words
        the run ends with, or the watchdog's reason."""
        if self.stopped is not None:
            return self.stopped
        return TransientImportError(self.reason)

    # --- called by the reader -----------------------------------------------------------------

    def begin_wait(self) -> None:
        self._waiting_since = time.monotonic()

    def begin_asking(self) -> None:
        """A request is sent and its answer's headers awaited: the cancel looks count it as a
        wait (a cancel before the headers waited for the read timeout, 60 s); the rate is the
        body's alone."""
        self._asking_since = time.monotonic()

    def end_asking(self) -> None:
        self._asking_since = None

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
                f"{self.doing} took longer than {self.deadline:g}s (FETCH_TOTAL_TIMEOUT_SECONDS)"
            )
            return False
        waited = self._waited_now()
        if waited - self._window_waited >= RATE_WINDOW_SECONDS:
            received = self._received - self._window_received
            if received < self.min_rate * (waited - self._window_waited):
                of = "" if self.doing == DOWNLOAD else f" of {self.doing}"
                self._fire(
                    f"the server sent {received} bytes{of} in "
                    f"{waited - self._window_waited:.0f}s, slower than {self.min_rate:g} bytes/s "
                    "(FETCH_MIN_BYTES_PER_SECOND)"
                )
                return False
            self._window_waited, self._window_received = waited, self._received
        return True

    def _look_for_cancel(self) -> bool:
        """One look on the cancel looks' thread; False once the download is ended."""
        ask = self.stop_if_asked
        if self.reason or ask is None:
            return False
        since = self._waiting_since if self._waiting_since is not None else self._asking_since
        if since is None or time.monotonic() - since < CANCEL_LOOK_SECONDS:
            return True  # not stalled: the run looks itself as the bytes come
        try:
            ask()
        except RunCancelled as asked:
            self.stopped = asked
            self._fire(str(asked))
            return False
        except Exception as error:
            # The database away a moment: the next look tries on a fresh connection.
            logger.debug("cannot look whether the run was cancelled: %r", error)
            _close_thread_connection()
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


def _close_thread_connection() -> None:
    from django.db import connection

    with suppress(Exception):
        connection.close()


# Every download of this process is watched from one thread (common.ticker), not one each.
_watchdogs = Ticker("fetch watchdogs")
# Its cancel looks read the database: their thread's connection closes once no download is left.
_cancel_looks = Ticker("fetch cancel looks", idle=_close_thread_connection)
