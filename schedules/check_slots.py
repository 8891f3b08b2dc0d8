"""How many checks of a source are in progress at once: per user, for everyone, and in this web
process (schedules.source_check).

A check (`POST /imports/check`, `?dry_run=true`, the admin's Test source) holds a web thread
while a worker fetches the source, up to SOURCE_CHECK_WAIT_SECONDS, and a worker slot while it
fetches. Its throttle bounds a rate, 30 a minute, not how many wait at once: one user's burst
of checks of a source that took the connection and never answered held every thread of the
Procfile's web (2 x 4) for 20 s each, everyone's requests (and the load balancer's health
check) waited behind them, and the checks took both slots of the worker (attack hunt).

So a check takes a slot first, or is refused at once (429, with Retry-After; the admin's
message says the same): one of its user's SOURCE_CHECKS_AT_ONCE, one of everyone's
SOURCE_CHECKS_AT_ONCE_IN_ALL, and one of this process's, half its threads (gunicorn's own
count, recorded by gunicorn.conf.py; WEB_THREADS outside gunicorn): gunicorn's threaded worker
takes a request even while all its threads are busy, and queues it behind them, so checks spread
unevenly over the processes could still hold every thread of one.

The slots of users and of everyone are members of Redis sorted sets, scored with the end of
their check's wait (the database's clock, common.database_clock), taken and counted by one
script (as tasks.fairness admits runs). A check gives its slot back when it ends, however it
ends; one whose web process was killed holds it until MARGIN_SECONDS past its wait, when the
next count drops it. Without Redis the caps of users and of everyone are not enforced (the
check then meets what it needs: the broker answers in words), the process's still is.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

from django.conf import settings
from redis import Redis
from redis.commands.core import Script
from redis.exceptions import RedisError

from common import database_clock, error_words
from common.redis_client import client

logger = logging.getLogger(__name__)

# A slot outlives its check's wait by this much before a count drops it (its web process was
# killed while it waited): the time the page's answer takes after the wait.
MARGIN_SECONDS = 5
EVERYONE = "importbeat:source-checks"

# KEYS: the sets of checks in progress the check counts in (its user's, everyone's). ARGV: the
# slot's token, the end of its check's wait, the time before which a check's wait ended too long
# ago to hold its slot, the keys' expiry (ms), then each key's cap (0: none). Taken in every
# set or in none: {i, the checks of KEYS[i], the end of its first one's wait} when KEYS[i] is at
# its cap.
TAKE = """
for i, key in ipairs(KEYS) do
    redis.call('zremrangebyscore', key, '-inf', ARGV[3])
    local cap = tonumber(ARGV[4 + i])
    local held = redis.call('zcard', key)
    if cap > 0 and held >= cap then
        return {i, held, redis.call('zrange', key, 0, 0, 'WITHSCORES')[2]}
    end
end
for _, key in ipairs(KEYS) do
    redis.call('zadd', key, ARGV[2], ARGV[1])
    redis.call('pexpire', key, ARGV[4])
end
return false
"""


class Busy(Exception):
    """No slot for the check: its words, and the seconds until one is sure to be free."""

    def __init__(self, words: str, retry_after: int) -> None:
        super().__init__(words)
        self.retry_after = retry_after


@contextmanager
def held(user_id: int | None, wait: float) -> Iterator[None]:
    """A slot for a check whose caller waits `wait` seconds at most, for the while of the
    `with`; raises Busy at once when there is none. `user_id` None: no user's cap (a caller
    that is no user)."""
    with _in_this_process(wait):
        token = _take(user_id, wait)
        try:
            yield
        finally:
            if token is not None:
                _give_back(user_id, token)


def user_key(user_id: int) -> str:
    return f"{EVERYONE}:user:{user_id}"


def _take(user_id: int | None, wait: float) -> str | None:
    """A slot of the user's and of everyone's, taken in one step: its token; None when Redis
    did not answer (the caps not enforced)."""
    token = uuid.uuid4().hex
    now = database_clock.timestamp()
    counted = [(EVERYONE, settings.SOURCE_CHECKS_AT_ONCE_IN_ALL)]
    if user_id is not None:
        counted.insert(0, (user_key(user_id), settings.SOURCE_CHECKS_AT_ONCE))
    expiry_ms = math.ceil((wait + MARGIN_SECONDS) * 1000)
    try:
        full = _script()(
            keys=[key for key, _cap in counted],
            args=[token, now + wait, now - MARGIN_SECONDS, expiry_ms,
                  *(max(cap, 0) for _key, cap in counted)],
        )  # fmt: skip
    except RedisError as error:
        logger.warning(
            "source checks in progress not counted: %s", error_words.redis_for_the_log(error)
        )
        return None
    if full is None:
        return token
    key, count, first_ends = counted[int(full[0]) - 1][0], int(full[1]), float(full[2])
    # The first slot frees when its check ends, by the end of its wait; once that has passed,
    # its web process was killed (or its answer is on its way) and the slot is held
    # MARGIN_SECONDS more. It said 1 s then, five times in a row, each retry refused (review1).
    frees_at = first_ends if first_ends > now else first_ends + MARGIN_SECONDS
    retry_after = max(1, math.ceil(frees_at - now))
    if key != EVERYONE:
        raise Busy(yours_in_progress(count), retry_after)
    raise Busy(everyones_in_progress(count, retry_after), retry_after)


def _give_back(user_id: int | None, token: str) -> None:
    try:
        with client().pipeline(transaction=False) as pipe:
            if user_id is not None:
                pipe.zrem(user_key(user_id), token)
            pipe.zrem(EVERYONE, token).execute()
    except RedisError as error:
        logger.warning("a source check's slot not given back (it frees within %ss): %s",
                       MARGIN_SECONDS, error)  # fmt: skip


def yours_in_progress(count: int) -> str:
    if count == 1:
        return "1 source check of yours is in progress: wait for it to end"
    return f"{count} source checks of yours are in progress: wait for one to end"


def everyones_in_progress(count: int, retry_after: int) -> str:
    return (
        f"{_checks_are(count)} in progress, as many as importbeat takes at once: try again "
        f"in {retry_after} s"
    )


def this_process_in_progress(count: int, retry_after: int) -> str:
    """A check refused for its web process's cap: importbeat may take more, elsewhere (a retry
    that lands on another process is taken). It was told "as many as importbeat takes at once",
    "1 source checks are" (review1)."""
    return (
        f"{_checks_are(count)} in progress on this web process, as many as it takes at once: "
        f"try again in {retry_after} s"
    )


def _checks_are(count: int) -> str:
    return "1 source check is" if count == 1 else f"{count} source checks are"


# The ends of the waits of this process's checks in progress (time.monotonic()).
_here: list[float] = []
_here_lock = threading.Lock()
# This process's threads as gunicorn runs it (record_threads, from gunicorn.conf.py); None
# outside gunicorn (runserver, a test), where WEB_THREADS stands for them.
_threads: int | None = None


def record_threads(threads: int) -> None:
    """gunicorn's thread count for this worker process (`worker.cfg.threads`): WEB_THREADS is
    what the Procfile passes, but a command written by hand (`--threads 8`, without it) capped
    at half of 4, and `--threads 2` at every thread (review1)."""
    global _threads
    _threads = threads


def in_process_cap() -> int:
    """Half this process's threads: the others stay for everyone else.

    One thread (gunicorn's sync worker) may take a check: half of it would be none, refusing
    every check of a web of sync workers. A sync worker takes no request while its thread is
    busy, so nothing queues behind a check there (the next request waits in the socket for
    another process), and SOURCE_CHECKS_AT_ONCE_IN_ALL, half the web's threads, still keeps the
    other processes for everyone else."""
    threads = _threads if _threads is not None else settings.WEB_THREADS
    return max(1, threads // 2)


@contextmanager
def _in_this_process(wait: float) -> Iterator[None]:
    now = time.monotonic()
    ends = now + wait
    with _here_lock:
        cap = in_process_cap()
        if len(_here) >= cap:
            retry_after = max(1, math.ceil(min(_here) - now))
            busy = Busy(this_process_in_progress(len(_here), retry_after), retry_after)
        else:
            busy = None
            _here.append(ends)
    if busy is not None:
        raise busy
    try:
        yield
    finally:
        with _here_lock:
            _here.remove(ends)


def _script() -> Script:
    return _script_on(client())


@cache
def _script_on(redis: Redis) -> Script:
    # Registered on the process's client as it is now: cached alone, it kept the client of the
    # first check for good, and a test that pointed REDIS_URL at a Redis gone since left every
    # later check of its test process uncounted (a CI run's failure).
    return redis.register_script(TAKE)
