"""An owner's notifications go one at a time: a slow receiver holds one worker slot, not all.

A callback that answers each POST after some seconds, well inside the read timeout (so it is
never taken as not answering, tasks.destinations), took a worker slot for those seconds per
notification. A user whose imports failed together held every slot until their notifications
were through, and every other user's run waited behind them in the queue; a mail server slow
to take one owner's e-mails did the same, the others waiting on the owner's mailbox row.

Now a notification first takes its owner's turn, a Redis lock shared by every worker; one that
finds it taken is not sent yet and comes back a moment later (OwnerBusy), without counting as
one of its attempts, its slot free meanwhile for anyone else. Owners do not wait on one
another. Fails open: without Redis, every notification goes as before.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator
from contextlib import contextmanager, suppress

from redis.exceptions import LockError, RedisError

from common.redis_client import client

from .errors import TransientImportError

logger = logging.getLogger("importbeat.alerts")

# Longer than a notification's task may run (tasks.deliver_notification's time limit), so
# that a turn is never taken from a notification still being sent; it frees the turn of a
# worker killed while sending.
TURN_SECONDS = 120
# The waits between looks at a taken turn: 1 s, then up to twice as long each time (jittered,
# so that an owner's waiting notifications do not all look at once), at most this.
MAX_WAIT_SECONDS = 16


class OwnerBusy(TransientImportError):
    """Not sent yet: another notification of the same owner is being sent."""


@contextmanager
def turn(owner_id: int) -> Iterator[None]:
    """Hold the owner's turn while the notification is sent; raise OwnerBusy when another
    notification of theirs holds it."""
    lock = client().lock(f"importbeat:owner:{owner_id}:notifying", timeout=TURN_SECONDS)
    try:
        taken = lock.acquire(blocking=False)
    except RedisError as error:
        logger.warning("user %s's notifications not taken in turn: %s", owner_id, error)
        yield
        return
    if not taken:
        raise OwnerBusy("waiting its turn: another notification of its owner is being sent")
    try:
        yield
    finally:
        # Expired (a send that outlasted TURN_SECONDS) or Redis gone: the turn is free anyway.
        with suppress(LockError, RedisError):
            lock.release()


def wait_seconds(waits: int) -> float:
    """When a notification that found its owner's turn taken `waits` times looks again."""
    return 1 + random.uniform(0, min(2**waits, MAX_WAIT_SECONDS))
