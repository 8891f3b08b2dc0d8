"""A stop (SIGTERM, SIGINT) that arrives during work which must not be cut in two is acted on
once that work ends.

Celery's beat stops by raising SystemExit from its signal handler, wherever its main thread
is. Between the commit of a batch of runs and the publish of their messages, a beat stopped
by a deploy left runs queued without a message: reconciliation found them a grace period
later, and took a scheduled one for a missed tick, which an import with `catchup: skip` then
never ran; meanwhile its next ticks were skipped as waiting behind it.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

STOPS = (signal.SIGTERM, signal.SIGINT)


@contextmanager
def held_back() -> Iterator[None]:
    """Hold back the stops received in the block, then act on them as they would have been.

    Python runs signal handlers in the main thread only, whichever thread the signal reached,
    so the handlers are swapped rather than the signals blocked. Elsewhere than the main thread
    (where handlers cannot be set, and no stop lands) the block runs as it is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def hold(signum: int, _frame: FrameType | None) -> None:
        received.append(signum)

    # A handler not set from Python (None) could not be set back: that stop is left as it is.
    previous = {
        signum: signal.signal(signum, hold)
        for signum in STOPS
        if signal.getsignal(signum) is not None
    }
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for signum in dict.fromkeys(received):
            signal.raise_signal(signum)
