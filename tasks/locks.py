"""Leases in Redis: the single-instance lock of a run, and the beat leader.

Both are redis-py `Lock`s (a key set with NX and a TTL, whose value is a random token; renewal
and release are Lua scripts that check the token, so nobody can extend or free a lease it does
not hold). A lease expires by itself when its holder dies, and a live holder renews it.

A restarted Redis without persistence forgets every lease. A holder that finds its key gone
takes it again with the same token (`Lease.renew`); the database keeps the invariant meanwhile
(`run_one_in_progress_per_import`), so a run can never be doubled by that window.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable

from django.conf import settings
from redis.exceptions import LockError, LockNotOwnedError, RedisError
from redis.lock import Lock

# One client and one connection pool per process, shared with schedules and beat.
from project.redis_client import client

from .ticker import Check, Ticker

logger = logging.getLogger("importbeat.locks")


class Lease:
    """A named lease with an owner label in its token, so others can tell who holds it."""

    def __init__(self, name: str, ttl_seconds: float, owner: str) -> None:
        self.name = name
        self.ttl = ttl_seconds
        self.token = f"{owner}:{uuid.uuid4().hex}"
        # thread_local=False: the renewal thread must see the token the worker thread took.
        self._lock = Lock(client(), name, timeout=ttl_seconds, thread_local=False)

    def acquire(self) -> bool:
        """Take the lease if nobody holds it; never waits."""
        return self._lock.acquire(blocking=False, token=self.token)

    def renew(self) -> bool:
        """Push the expiry back to a full TTL; retake the key if Redis lost it.

        False means someone else holds it now: the lease is lost.
        """
        try:
            self._lock.reacquire()
            return True
        except LockNotOwnedError:
            # Our key is gone (expired during a long stall, or Redis restarted empty): take it
            # again with the same token unless another holder got there first.
            return self._lock.acquire(blocking=False, token=self.token)

    def release(self) -> None:
        """Free the lease if it is still ours; a lease already lost or expired is left alone."""
        try:
            self._lock.release()
        except LockError:
            pass
        except RedisError as error:
            # It expires by itself; a release that cannot reach Redis only delays the next run.
            logger.warning("lease release failed name=%s error=%s", self.name, error)

    def holder(self) -> str | None:
        """The owner label of whoever holds the lease now, or None."""
        value = client().get(self.name)
        return value.decode().rsplit(":", 1)[0] if value else None


def run_lease(import_id: int, run_id: int) -> Lease:
    """The single-instance lease of an import, taken on behalf of one of its runs."""
    return Lease(f"importbeat:lock:import:{import_id}", settings.RUN_LEASE_SECONDS, f"run-{run_id}")


def run_lease_holder(import_id: int) -> int | None:
    """The id of the run holding the import's lease, or None when nobody does."""
    holder = Lease(f"importbeat:lock:import:{import_id}", 1, "probe").holder()
    if holder and holder.startswith("run-"):
        return int(holder.removeprefix("run-"))
    return None


class Renewer:
    """Renews a lease every third of its TTL while the work it guards lives.

    `beat` runs on every renewal (the run's heartbeat in the database); its errors are logged
    and tolerated, like Redis being away for a while: the next round tries again. Renewals
    run on the process's one renewal thread (tasks.ticker), never on the worker's.
    """

    def __init__(self, lease: Lease, beat: Callable[[], None] | None = None) -> None:
        self.lease = lease
        self.beat = beat
        self.lost = False
        self._check: Check | None = None

    def start(self) -> None:
        self._check = _renewals.every(max(self.lease.ttl / 3, 0.2), self._renew)

    def stop(self) -> None:
        """No renewal after this returns: the lease can be released without one retaking it."""
        if self._check is not None:
            self._check.cancel()

    def _renew(self) -> None:
        try:
            if not self.lease.renew():
                self.lost = True
                logger.error("lease lost to another holder name=%s", self.lease.name)
        except RedisError as error:
            logger.warning("lease renewal failed name=%s error=%s", self.lease.name, error)
        if self.beat is not None:
            try:
                self.beat()
            except Exception as error:
                logger.warning("heartbeat failed name=%s error=%r", self.lease.name, error)
                # Django never reconnects a broken connection by itself; the next round
                # opens a fresh one.
                _close_thread_connection()


def _close_thread_connection() -> None:
    from django.db import connection

    try:
        connection.close()
    except Exception:
        logger.debug("closing a broken connection failed", exc_info=True)


# The renewal thread's own database connection (the heartbeats') closes once no lease is left
# to renew, as each renewal thread's did at its end.
_renewals = Ticker("lease renewals", idle=_close_thread_connection)
