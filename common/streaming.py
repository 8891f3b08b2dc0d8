"""Streamed responses that outlive the web server's worker timeout while they make progress,
and that are cut off when their client stops taking them.

gunicorn's arbiter kills a worker that has not told it "alive" for `--timeout` seconds (30 by
default). A sync worker told it only between requests, so a response longer than that was cut
off wherever it had got to: a dataset's export of two million records stopped at 1.4 million
after 30 s, the access log said 200, and `curl -s … > prices.csv` left a truncated file behind
(issue 15's theme: nothing true only at small scale). gunicorn offers no way for an application
to reach its worker's heartbeat (benoitc/gunicorn#1968); its `post_worker_init` hook gives us
the worker, and `gunicorn.conf.py` hands its `notify` and its timeout to `install`. A gunicorn
started elsewhere without that file says so in its log at the first long response
(`_unprotected`). (The Procfile's workers are threaded now, gthread, whose own loop tells the
arbiter "alive" whatever a request does; the beat stays for a sync worker.)

A stream then beats each time a chunk has been written to the client, at most once a second
(long work that answers only at its end calls `alive` after each step instead). And a client
that takes nothing of a response for STALL_SHARE of the timeout, its chunk's write blocked
(a client that stopped reading, or reads a few bytes a minute), is cut off: its socket is shut
down from a watch thread (common.ticker), which ends the blocked write at once. Before, such a
client held its worker for as long as it liked, or until the arbiter killed the whole process;
two of them held the web's two workers, and no one else was answered. Outside gunicorn (tests,
the development server) nothing is installed and the stream is passed through unchanged.
"""

from __future__ import annotations

import logging
import socket
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import suppress
from typing import Any, TypeVar

from .ticker import Check, Ticker

T = TypeVar("T")

# At most one beat a second: the arbiter's timeout is counted in tens of seconds.
BEAT_INTERVAL_SECONDS = 1.0

# A client that takes nothing of a response for this share of gunicorn's timeout is cut off:
# before the arbiter would kill a sync worker whose write is blocked.
STALL_SHARE = 0.75

_notify: Callable[[], None] | None = None
_stall_seconds: float | None = None
_last_beat = 0.0
_warned = False
logger = logging.getLogger("importbeat.web")


def install(notify: Callable[[], None] | None, timeout: float | None = None) -> None:
    """Tell the worker's arbiter "alive" with `notify` (gunicorn's `Worker.notify`); cut off
    a client that takes nothing of a response for STALL_SHARE of `timeout` (its --timeout)."""
    global _notify, _stall_seconds
    _notify = notify
    _stall_seconds = timeout * STALL_SHARE if timeout else None


def _unprotected() -> None:
    """Log once that this gunicorn worker runs without the hook (no gunicorn.conf.py read):
    its long responses will be killed after --timeout, and nothing else would say why."""
    global _warned
    if _warned or "gunicorn.arbiter" not in sys.modules:
        return
    _warned = True
    logger.warning(
        "gunicorn started without importbeat's gunicorn.conf.py (start it in the project's "
        "directory, or with -c pointing at that file): a long export or deletion is killed "
        "after gunicorn's --timeout"
    )


def alive() -> None:
    """Work in a request made progress: tell the arbiter, at most once a second.

    For long work that answers at its end rather than streaming (a dataset's deletion, one
    statement per range of its records): each call is a step done, so a request that stops
    calling it, stuck, is still killed after the timeout."""
    global _last_beat
    if _notify is None:
        _unprotected()
        return
    now = time.monotonic()
    if now - _last_beat >= BEAT_INTERVAL_SECONDS:
        _notify()
        _last_beat = now


def streamed(chunks: Iterable[T], client: Any = None, what: str = "") -> Iterator[T]:
    """`chunks`, telling the arbiter the worker is alive as each one goes out; `client` (the
    request's socket, gunicorn's `gunicorn.socket`) cut off if it stops taking them. `what`
    names the response in the log."""
    global _last_beat
    if _notify is None:
        _unprotected()
        yield from chunks
        return
    stall = _Stall(client, _stall_seconds, what) if client is not None and _stall_seconds else None
    _last_beat = time.monotonic()
    try:
        for chunk in chunks:
            if stall is not None:
                stall.writing_since = time.monotonic()
            yield chunk  # returns once the server has written it: that is progress
            if stall is not None:
                stall.writing_since = None
            alive()
    finally:
        if stall is not None:
            stall.check.cancel()


class _Stall:
    """A watch on one streamed response's writes: once one has been blocked for `seconds`, the
    client's socket is shut down (socket.socket's own shutdown, also for a TLS socket), which
    ends the write at once; the server then drops the connection, and the stream is closed."""

    def __init__(self, client: Any, seconds: float, what: str) -> None:
        self.client, self.seconds, self.what = client, seconds, what
        self.writing_since: float | None = None
        self.check: Check = _stalls.every(min(1.0, seconds / 4), self._look)

    def _look(self) -> bool:
        since = self.writing_since
        if since is None or time.monotonic() - since < self.seconds:
            return True
        logger.warning(
            "cut off %s: the client took nothing of it for %.0f s", self.what or "a response",
            self.seconds,
        )  # fmt: skip
        with suppress(OSError):
            socket.socket.shutdown(self.client, socket.SHUT_RDWR)
        return False


# Every streamed response of this process is watched from one thread, not one each.
_stalls = Ticker("stalled responses")
