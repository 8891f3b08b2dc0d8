"""Leases in Redis: what the single-instance lock of a run (tasks.locks) and the beat leader
(project.beat) are made of.

A lease is a redis-py `Lock` (a key set with NX and a TTL, whose value is a random token;
renewal and release are Lua scripts that check the token, so nobody can extend or free a lease
it does not hold). It expires by itself when its holder dies, and a live holder renews it.

A restarted Redis without persistence forgets every lease. A holder that finds its key gone
takes it again with the same token (`Lease.renew`).
"""

from __future__ import annotations

import logging
import uuid

from redis.exceptions import LockError, LockNotOwnedError, RedisError
from redis.lock import Lock

from common import error_words

# One client and one connection pool per process, shared with schedules and beat.
from common.redis_client import client

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
            logger.warning(
                "lease release failed name=%s: %s", self.name, error_words.redis_for_the_log(error)
            )

    def holder(self) -> str | None:
        """The owner label of whoever holds the lease now, or None."""
        value = client().get(self.name)
        return value.decode().rsplit(":", 1)[0] if value else None


# Deletes the key only while `owner` (the label before the token's ":") holds it.
_FREE_IF_HELD_BY = """
local value = redis.call('get', KEYS[1])
if value and string.sub(value, 1, string.len(ARGV[1])) == ARGV[1] then
    return redis.call('del', KEYS[1])
end
return 0
"""


def free_if_held_by(name: str, owner: str) -> bool:
    """Free the lease `name` while `owner` holds it: one whose holder died, its token lost
    with it. False when someone else holds it, or nobody."""
    return bool(client().eval(_FREE_IF_HELD_BY, 1, name, f"{owner}:"))
