"""Streamed responses that outlive the web server's worker timeout while they make progress.

The Procfile's gunicorn runs sync workers, whose arbiter kills a worker that has not told it
"alive" for `--timeout` seconds (30 by default). A sync worker tells it only between requests,
so a response longer than that was cut off wherever it had got to: a dataset's export of two
million records stopped at 1.4 million after 30 s, the access log said 200, and
`curl -s … > prices.csv` left a truncated file behind (issue 15's theme: nothing true only at
small scale). gunicorn offers no way for an application to reach its worker's heartbeat
(benoitc/gunicorn#1968); its `post_worker_init` hook gives us the worker, and
`gunicorn.conf.py` hands its `notify` to `install`. A gunicorn started elsewhere without that
file says so in its log at the first long response (`_unprotected`).

A stream then beats each time a chunk has been written to the client, at most once a second
(long work that answers only at its end calls `alive` after each step instead):
a worker writing a long response lives on, while one that is stuck (a query that never returns,
a client that stopped reading) is still killed after the timeout. Outside gunicorn (tests, the
development server) nothing is installed and the stream is passed through unchanged.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

# At most one beat a second: the arbiter's timeout is counted in tens of seconds.
BEAT_INTERVAL_SECONDS = 1.0

_notify: Callable[[], None] | None = None
_last_beat = 0.0
_warned = False
logger = logging.getLogger("importbeat.web")


def install(notify: Callable[[], None] | None) -> None:
    """Tell the worker's arbiter "alive" with `notify` (gunicorn's `Worker.notify`)."""
    global _notify
    _notify = notify


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


def streamed(chunks: Iterable[T]) -> Iterator[T]:
    """`chunks`, telling the arbiter the worker is alive as each one goes out."""
    global _last_beat
    if _notify is None:
        _unprotected()
        yield from chunks
        return
    _last_beat = time.monotonic()
    for chunk in chunks:
        yield chunk  # returns once the server has written it: that is progress
        alive()
