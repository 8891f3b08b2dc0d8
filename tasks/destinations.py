"""Receivers that do not answer: one try per wait, not one per notification.

A webhook receiver that hung took a worker slot for the whole read timeout (10 s), for each
attempt of each notification to it: a user whose two dozen imports failed, their callback
down, held both slots of a worker for two minutes, and every other user's run waited behind
them in the queue. Now the first notification that gets no answer (its connection refused,
failed or timed out) marks its destination, the callback's host and port, as not answering
for a wait that doubles with each unanswered try (FIRST_WAIT_SECONDS up to MAX_WAIT_SECONDS).
Notifications to it in the meantime are not sent, and their log says why; once the wait is
over, one of them alone tries again (the others wait on), and any answer ends the wait. A
callback whose server took the connection and did not answer in time (a read timeout, an
answer dripping past the deadline) makes that callback URL wait, not its host: one owner's slow
path on a shared receiver service stopped every other owner's webhooks to it, each wait
counted as one of their attempts, until they failed without a POST (notifications hunt).

The state is shared by every worker, in Redis: a hash per destination, and the key of the try
under way. Fails open: without Redis, every notification tries as before.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache

from redis.commands.core import Script
from redis.exceptions import RedisError

from common import database_clock
from common.redis_client import client
from schedules import credentials

from .errors import ImportFailed, TransientImportError
from .fetch_errors import failure

logger = logging.getLogger("importbeat.alerts")

FIRST_WAIT_SECONDS = 10
MAX_WAIT_SECONDS = 600
# The try after a wait holds this key while it is under way (longer than a delivery's task
# may run: tasks.deliver_notification's time limit), so that two workers do not both try.
TRY_SECONDS = 120


@dataclass(frozen=True)
class NotAnswering:
    """A destination's last unanswered try: when, why (plain words), and when to try again."""

    at: float
    reason: str
    until: float


class Waiting(TransientImportError):
    """Not sent: the destination did not answer another notification a moment ago. Retried
    no sooner than `seconds` from now."""

    def __init__(self, message: str, seconds: float) -> None:
        super().__init__(message)
        self.seconds = seconds


class NoAnswer(TransientImportError):
    """The destination did not answer: the connection was refused, failed or timed out.
    `reason` says why in plain words, without the URL (another owner's notifications to the
    same host read it)."""

    def __init__(self, message: str, reason: str = "no answer", *, connected: bool = False) -> None:
        super().__init__(message)
        self.reason = reason
        # The server took the connection and did not answer in time: that callback is slow,
        # not its host, which may answer other callbacks (other owners') at once.
        self.connected = connected


def no_answer(what: str, error: BaseException) -> ImportFailed:
    """NoAnswer(`what: <plain words>`) for a request that got no answer (tasks.fetch_errors)."""
    failed = failure(NoAnswer, what, error)
    failed.reason = str(failed).removeprefix(f"{what}: ")
    return failed


def of_url(url: str) -> str:
    """A callback's destination: its host and port, as its POST connects to them."""
    return credentials.origin(url).partition("://")[2]


def of_callback(url: str) -> str:
    """The destination of one callback URL on its host, named without its path (which may
    hold a secret: a chat service's hook): `hooks.example.com:443 (callback 5f2a9c1e)`."""
    return f"{of_url(url)} (callback {hashlib.sha256(url.encode()).hexdigest()[:8]})"


def admit(destination: str) -> None:
    """Return when a notification may go to `destination` now; raise Waiting when it did not
    answer another one within its wait, or another try after the wait is under way."""
    try:
        found = _scripts()[0](
            keys=_keys(destination), args=[database_clock.timestamp(), TRY_SECONDS]
        )
    except RedisError as error:
        logger.warning("whether %s answers was not checked: %s", destination, error)
        return
    if not found:
        return
    state = dict(zip(found[::2], found[1::2], strict=True))
    last = NotAnswering(
        at=float(state[b"at"]), reason=state[b"reason"].decode(), until=float(state[b"until"])
    )
    raise Waiting(
        f"not sent: {destination} did not answer another notification at {_clock(last.at)}: "
        f"{last.reason}",
        max(last.until - database_clock.timestamp(), 0) + FIRST_WAIT_SECONDS,
    )


def not_answered(destination: str, reason: str) -> None:
    """A try to `destination` got no answer (`reason`, plain words with no URL in them): the
    notifications to it wait, longer after each unanswered try."""
    try:
        _scripts()[1](
            keys=_keys(destination),
            args=[database_clock.timestamp(), reason, FIRST_WAIT_SECONDS, MAX_WAIT_SECONDS],
        )
    except RedisError as error:
        logger.warning("that %s does not answer was not noted: %s", destination, error)
        return
    logger.warning("notifications to %s wait: it did not answer (%s)", destination, reason)


def answered(destination: str) -> None:
    """`destination` answered (whatever its answer): the notifications to it go at once."""
    try:
        ended = client().delete(*_keys(destination))
    except RedisError as error:
        logger.warning("that %s answers again was not noted: %s", destination, error)
        return
    if ended:
        logger.info("notifications to %s go again: it answered", destination)


def _keys(destination: str) -> list[str]:
    return [f"importbeat:destination:{destination}", f"importbeat:destination:{destination}:try"]


def _clock(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).strftime("%H:%M:%S UTC")


# Nothing noted: go. Within the wait: the state, to wait. After it: go as the one try (the key
# of the try taken), or wait while another try is under way.
ADMIT = """
local state = redis.call('hgetall', KEYS[1])
if #state == 0 then return false end
if tonumber(redis.call('hget', KEYS[1], 'until')) <= tonumber(ARGV[1])
   and redis.call('set', KEYS[2], '1', 'NX', 'EX', ARGV[2]) then
    return false
end
return state
"""
# The first unanswered try starts a wait of ARGV[3] seconds; a try after a wait doubles it,
# up to ARGV[4]. Tries that were under way when another one failed change nothing.
NOT_ANSWERED = """
local now = tonumber(ARGV[1])
local failures = tonumber(redis.call('hget', KEYS[1], 'failures') or '0')
local until_ = tonumber(redis.call('hget', KEYS[1], 'until') or '0')
if failures > 0 and until_ > now then return 0 end
failures = failures + 1
local wait = math.min(tonumber(ARGV[3]) * 2 ^ (failures - 1), tonumber(ARGV[4]))
redis.call('hset', KEYS[1], 'failures', failures, 'at', ARGV[1], 'reason', ARGV[2],
           'until', now + wait)
redis.call('expire', KEYS[1], math.ceil(wait + tonumber(ARGV[4])))
redis.call('del', KEYS[2])
return 1
"""


@cache
def _scripts() -> tuple[Script, Script]:
    return client().register_script(ADMIT), client().register_script(NOT_ANSWERED)
