"""An owner's webhooks go one at a time: a slow receiver holds one worker slot, not all.

A callback that answers each POST after some seconds, well inside the read timeout (so it is
never taken as not answering, tasks.destinations), took a worker slot for those seconds per
notification. A user whose imports failed together held every slot until their notifications
were through, and every other user's run waited behind them in the queue.

Now a webhook's task first takes its owner's turn, a Redis lock shared by every worker. One
that finds it taken is parked in its owner's line (a Redis list) and its task ends in RETRY
("waiting its turn", in Flower too), its slot free for anyone else; the task that gives the
turn back sends the first parked one's message again, under its id and with its retries so
far, as Celery sends a retry. So each notification costs one message more at most, however
long the line: waiting by retrying on a timer cost a message per look, thousands a second for
an owner with ten thousand notifications. Owners do not wait on one another. E-mails do not
take the turn: an owner's e-mails already take turns on their mailbox, and one e-mail per
interval goes out (schedules.email_digest); parking them cost a burst of ten thousand 40 %
more time in a bench.

A turn whose task died is free again after TURN_SECONDS; the sweep (maintenance.sweep_runs)
then sends the first parked notification of each line that nobody holds the turn of. Fails
open: without Redis, every notification goes as it comes.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache

from celery import current_app
from redis.commands.core import Script
from redis.exceptions import RedisError

from common.redis_client import client

logger = logging.getLogger("importbeat.alerts")

# Longer than a notification's task may run (tasks.deliver_notification's time limit), so
# that a turn is never taken from a notification still being sent.
TURN_SECONDS = 120
# A line nobody took from for this long is dropped: its notifications are long sent again by
# the sweep (notifications.resend_pending) or failed.
LINE_SECONDS = 7 * 24 * 3600
# The owners who have a line: the sweep's list of lines to look at.
LINES = "importbeat:notifying:lines"
PARKED = "waiting its turn: another notification of its owner is being sent"


class Parked(Exception):
    """Why a parked notification's task ended in RETRY (Flower shows it)."""


@dataclass(frozen=True)
class Job:
    """A notification's task as it is to be sent again: its name, its id (sent again under the
    same id, as Celery retries a task, so Flower lists one task per notification), its one
    argument, and the retries it has had (its attempts so far)."""

    task: str
    task_id: str
    arg: int
    retries: int

    def encoded(self) -> str:
        return f"{self.task} {self.task_id} {self.arg} {self.retries}"

    @classmethod
    def decoded(cls, raw: bytes) -> Job:
        task, task_id, arg, retries = raw.decode().split()
        return cls(task, task_id, int(arg), int(retries))


@contextmanager
def turn(owner_id: int, job: Job) -> Iterator[bool]:
    """True while `job` holds its owner's turn (send it), False when it was parked in the
    owner's line instead (send nothing). Giving the turn back sends the next in line."""
    token = uuid.uuid4().hex
    try:
        taken = _take(owner_id, token, job)
    except RedisError as error:
        logger.warning("user %s's notifications not taken in turn: %s", owner_id, error)
        yield True
        return
    if not taken:
        yield False
        return
    try:
        yield True
    finally:
        _hand_on(owner_id, token)


def _take(owner_id: int, token: str, job: Job) -> bool:
    """Take the turn, or park `job` (False).

    Not looked at again before parking: with a receiver that answers at once, 50 ms of looks
    saved the burst's second messages but held a slot each, and another owner's run behind a
    thousand such webhooks waited 8.2 s, against 3.7-4.1 s parked (bench_an_owners_webhooks).
    """
    args = [token, TURN_SECONDS, job.encoded(), LINE_SECONDS, owner_id]
    return _scripts()[0](keys=_keys(owner_id), args=args) == 1


def send_stranded() -> int:
    """Send the first parked notification of each line whose turn nobody holds (its holder
    died); the number sent. For the sweep."""
    try:
        owners = [int(owner_id) for owner_id in client().smembers(LINES)]
    except RedisError as error:
        logger.warning("parked notifications not looked at: %s", error)
        return 0
    return sum(_hand_on(owner_id, "") for owner_id in owners)


def _hand_on(owner_id: int, token: str) -> bool:
    """Give the turn back (unless another holds it) and send the next parked notification."""
    keys = _keys(owner_id)
    try:
        raw = _scripts()[1](keys=keys, args=[token, owner_id])
    except RedisError as error:
        logger.warning("user %s's turn not given back: %s", owner_id, error)
        return False
    if raw is None:
        return False
    job = Job.decoded(raw)
    try:
        current_app.send_task(job.task, args=[job.arg], task_id=job.task_id, retries=job.retries)
    except Exception as error:
        # Back to the head of its line, where the sweep finds it once the broker answers.
        logger.warning("parked notification not sent task=%s arg=%s: %r", job.task, job.arg, error)
        with _suppressed_redis():
            client().lpush(keys[1], raw)
            client().sadd(LINES, owner_id)
        return False
    return True


@contextmanager
def _suppressed_redis() -> Iterator[None]:
    try:
        yield
    except RedisError as error:
        logger.warning("parked notification lost until the sweep resends it: %s", error)


def _keys(owner_id: int) -> list[str]:
    return [f"importbeat:owner:{owner_id}:notifying", f"importbeat:owner:{owner_id}:line", LINES]


# The turn taken (1), or the job parked at the end of the owner's line (0).
TAKE = """
if redis.call('set', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then return 1 end
redis.call('rpush', KEYS[2], ARGV[3])
redis.call('expire', KEYS[2], ARGV[4])
redis.call('sadd', KEYS[3], ARGV[5])
return 0
"""
# Unless another holds the turn (ARGV[1] '' when the sweep asks): free it, and the first parked
# job, taken from the line (false when none, and the owner has no line any more).
HAND_ON = """
local holder = redis.call('get', KEYS[1])
if holder and holder ~= ARGV[1] then return false end
if holder then redis.call('del', KEYS[1]) end
local first = redis.call('lpop', KEYS[2])
if not first then redis.call('srem', KEYS[3], ARGV[2]) end
return first
"""


@cache
def _scripts() -> tuple[Script, Script]:
    return client().register_script(TAKE), client().register_script(HAND_ON)
