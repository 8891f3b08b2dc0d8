"""Notifications take turns, so that a slow receiver holds a worker slot or a few, not all.

Notifications share the worker slots with runs. A callback that answers each POST after some
seconds, well inside the read timeout (so it is never taken as not answering,
tasks.destinations), took a slot for those seconds per notification: a user whose imports
failed together held every slot until their notifications were through, and every other
user's run waited behind them in the queue. A mail relay that takes a second an e-mail did the
same when many owners' imports failed at once.

Now a webhook takes its owner's turn first (one at a time per owner: `of_owner`), and an e-mail
that goes out now takes one of the mail relay's EMAIL_CONCURRENCY turns (`MAIL`); an e-mail
that the owner's digest holds sends nothing and takes no turn (schedules.email_digest). The
turns are a Redis sorted set of holders, shared by every worker. A notification that finds
them all taken is parked in the key's line (a Redis list) and its task ends in RETRY ("waiting
its turn", in Flower too), its slot free for anyone else; the task that gives a turn back
sends the first parked one's message again, under its id and with its retries so far, as
Celery sends a retry, and keeps the turn for it (`reserved`) until it comes: a turn free
while that message was on its way let a held e-mail send another parked job, which met a taken
turn and went to the end of the line. So each notification costs one message more at most,
however long the line: waiting by retrying on a timer cost a message per look, thousands a
second for an owner with ten thousand notifications.

A turn whose task died is free again after TURN_SECONDS; the sweep (maintenance.sweep_runs)
then sends the first parked notification of each line with a free turn. The sweep does not take
a parked notification for a lost one, however long it has waited (`parked`). Fails open:
without Redis, every notification goes as it comes.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache

from celery import current_app
from django.conf import settings
from redis.commands.core import Script
from redis.exceptions import RedisError

from common import database_clock
from common.redis_client import TURN_LINES_KEY, client, turn_line_key
from schedules.services import BROKER_ERRORS

logger = logging.getLogger("importbeat.alerts")

# Longer than a notification's task may run (tasks.deliver_notification's time limit), so
# that a turn is never taken from a notification still being sent.
TURN_SECONDS = 120
# A line nobody took from for this long is dropped: its notifications are long sent again by
# the sweep (notifications.resend_lost) or failed.
LINE_SECONDS = 7 * 24 * 3600
# The keys that have a line, each with its number of turns: the sweep's lines to look at.
LINES = TURN_LINES_KEY
# The parked jobs of every line, "<task> <argument>" by when they were parked: which
# notifications wait in a line (`parked`), not lost however long they wait.
PARKED_JOBS = "importbeat:turns:parked"
# The mail relay's turns (EMAIL_URL's server: one per deployment).
MAIL = "mail"
PARKED = "waiting its turn: "
# The header of a message sent by a hand-on: the key whose turn is kept for it.
HANDED_ON = "importbeat_turn_of"


def of_owner(owner_id: int) -> str:
    """The key of an owner's webhooks, which go one at a time."""
    return f"owner:{owner_id}"


class Parked(Exception):
    """Not sent now: the notification waits in its line. Its words say why (its task ends in
    RETRY with them, in Flower too)."""


def _why_parked(key: str, turns: int) -> str:
    if key == MAIL:
        return f"{PARKED}the mail relay is taking {turns} e-mail(s) already (EMAIL_CONCURRENCY)"
    return f"{PARKED}another webhook of the same owner is being sent"


def _parked_as(task: str, arg: int) -> str:
    """A parked job's member of PARKED_JOBS (HAND_ON's script builds the same from the line)."""
    return f"{task} {arg}"


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

    @property
    def parked_as(self) -> str:
        return _parked_as(self.task, self.arg)

    @property
    def reserved(self) -> str:
        """The holder of the turn a hand-on keeps for this job (HAND_ON writes the same)."""
        return f"sent:{self.task_id}"

    @classmethod
    def decoded(cls, raw: bytes) -> Job:
        task, task_id, arg, retries = raw.decode().split()
        return cls(task, task_id, int(arg), int(retries))


@contextmanager
def turn(key: str, job: Job, turns: int = 1) -> Iterator[None]:
    """Hold one of `key`'s `turns` while `job` is sent; raise Parked when they are all taken
    (the job is then in the key's line). Giving the turn back sends the next in line."""
    token = uuid.uuid4().hex
    try:
        taken = _take(key, token, job, turns)
    except RedisError as error:
        logger.warning("notifications of %s not taken in turn: %s", key, error)
        yield
        return
    if not taken:
        raise Parked(_why_parked(key, turns))
    try:
        yield
    finally:
        _hand_on(key, token, turns)


def _take(key: str, token: str, job: Job, turns: int) -> bool:
    """Take a turn, or park `job` (False).

    Not looked at again before parking: with a receiver that answers at once, 50 ms of looks
    saved the burst's second messages but held a slot each, and another owner's run behind a
    thousand such webhooks waited 8.2 s, against 3.3-5.2 s parked (bench_notifications_take_turns).
    """
    now = database_clock.timestamp()
    args = [token, now, now + TURN_SECONDS, job.encoded(), LINE_SECONDS, key, turns, job.parked_as]
    return _scripts()[0](keys=_keys(key), args=[*args, job.reserved]) == 1


def parked(task: str, args: list[int]) -> set[int]:
    """Which of `task`'s `args` wait in a line: the sweep does not send them again. A line
    longer than STALE_QUEUED_SECONDS (600 webhooks to a receiver that answers in 3 s) held its
    notifications `pending` past it: the sweep took them for lost and sent each again, 500 a
    minute, each copy sent in its turn too. None without Redis (their lines are gone anyway)."""
    if not args:
        return set()
    try:
        scores = client().zmscore(PARKED_JOBS, [_parked_as(task, arg) for arg in args])
    except RedisError as error:
        logger.warning("parked notifications not looked at: %s", error)
        return set()
    return {arg for arg, score in zip(args, scores, strict=True) if score is not None}


def send_stranded() -> int:
    """Send the first parked notification of each line with a turn free (its holder died);
    the number sent. For the sweep, which also forgets the parked jobs of lines long dropped.
    The lines are looked at in one round trip: one each took 0.9-1.2 s for 10,000 lines."""
    now = database_clock.timestamp()
    try:
        store = client()
        store.zremrangebyscore(PARKED_JOBS, "-inf", now - LINE_SECONDS)
        lines = [(key.decode(), int(turns)) for key, turns in store.hgetall(LINES).items()]
        looks = store.pipeline(transaction=False)
        for key, turns in lines:
            _scripts()[1](keys=_keys(key), args=_hand_on_args("", now, key, turns), client=looks)
        firsts = looks.execute()
    except RedisError as error:
        logger.warning("parked notifications not looked at: %s", error)
        return 0
    return sum(
        _send_next(key, raw, turns)
        for (key, turns), raw in zip(lines, firsts, strict=True)
        if raw is not None
    )


def pass_on(key: str, job: Job) -> bool:
    """For a notification sent by a hand-on (its message's HANDED_ON header names `key`) that
    takes none of `key`'s turns after all (an e-mail its owner's digest holds, a notification
    deleted meanwhile): the turn kept for it goes to the next parked one. It took none and
    handed none on, and the line waited for the sweep, one notification a pass (a digest
    waited over ten minutes behind three such e-mails). Nothing when no turn is kept for it (a
    retry of such a job carries the header too): a held e-mail that passed on a turn merely
    looking free sent a job more while the one a hand-on sent was still on its way."""
    return _hand_on(key, job.reserved, turns_of(key), only_if_held=True)


def turns_of(key: str) -> int:
    """How many notifications of `key` may be sent at once."""
    return settings.EMAIL_CONCURRENCY if key == MAIL else 1


def _hand_on(key: str, token: str, turns: int, only_if_held: bool = False) -> bool:
    """Give the turn back and, when one is free, send the next parked notification."""
    args = _hand_on_args(token, database_clock.timestamp(), key, turns, only_if_held)
    try:
        raw = _scripts()[1](keys=_keys(key), args=args)
    except RedisError as error:
        logger.warning("a turn of %s not given back: %s", key, error)
        return False
    return raw is not None and _send_next(key, raw, turns)


def _hand_on_args(
    token: str, now: float, key: str, turns: int, only_if_held: bool = False
) -> list[str | float | int]:
    return [token, now, key, turns, now + TURN_SECONDS, int(only_if_held)]


def _send_next(key: str, raw: bytes, turns: int) -> bool:
    """Send the parked job `raw`, just taken from `key`'s line (HAND_ON)."""
    job = Job.decoded(raw)
    try:
        current_app.send_task(
            job.task,
            args=[job.arg],
            task_id=job.task_id,
            retries=job.retries,
            headers={HANDED_ON: key},
        )
    except BROKER_ERRORS as error:
        # Back to the head of its line, where the sweep finds it once the broker answers.
        logger.warning("parked notification not sent task=%s arg=%s: %r", job.task, job.arg, error)
        try:
            back = client().pipeline().lpush(turn_line_key(key), raw).hset(LINES, key, turns)
            back.zadd(PARKED_JOBS, {job.parked_as: database_clock.timestamp()})
            back.zrem(_keys(key)[0], job.reserved).execute()
        except RedisError as lost:
            logger.warning("parked notification lost until the sweep resends it: %s", lost)
        return False
    return True


def _keys(key: str) -> list[str]:
    return [f"importbeat:turns:{key}:holders", turn_line_key(key), LINES, PARKED_JOBS]


# Expired holders dropped; a turn taken (1) when one is kept for the job (ARGV[9]) or fewer
# than ARGV[7] hold one, else the job parked at the end of the key's line, and noted among the
# parked ones (0).
TAKE = """
redis.call('zremrangebyscore', KEYS[1], '-inf', ARGV[2])
local kept = redis.call('zrem', KEYS[1], ARGV[9]) == 1
if kept or redis.call('zcard', KEYS[1]) < tonumber(ARGV[7]) then
    redis.call('zadd', KEYS[1], ARGV[3], ARGV[1])
    redis.call('expire', KEYS[1], math.ceil(ARGV[3] - ARGV[2]))
    return 1
end
redis.call('rpush', KEYS[2], ARGV[4])
redis.call('expire', KEYS[2], ARGV[5])
redis.call('hset', KEYS[3], ARGV[6], ARGV[7])
redis.call('zadd', KEYS[4], ARGV[2], ARGV[8])
return 0
"""
# The holder ARGV[1] gone (none when the sweep asks) with the expired ones (nothing more when
# ARGV[6] asks it to be held and it was not); when a turn is then free, the first parked job,
# taken from the line and the parked ones, its turn kept for it until ARGV[5] (false when none,
# and the line is forgotten).
HAND_ON = """
redis.call('zremrangebyscore', KEYS[1], '-inf', ARGV[2])
if ARGV[1] ~= '' and redis.call('zrem', KEYS[1], ARGV[1]) == 0 and ARGV[6] == '1' then
    return false
end
if redis.call('zcard', KEYS[1]) >= tonumber(ARGV[4]) then return false end
local first = redis.call('lpop', KEYS[2])
if not first then
    redis.call('hdel', KEYS[3], ARGV[3])
    return false
end
local task, id, arg = string.match(first, '^(%S+) (%S+) (%S+)')
redis.call('zrem', KEYS[4], task .. ' ' .. arg)
redis.call('zadd', KEYS[1], ARGV[5], 'sent:' .. id)
redis.call('expire', KEYS[1], math.ceil(ARGV[5] - ARGV[2]))
return first
"""


@cache
def _scripts() -> tuple[Script, Script]:
    return client().register_script(TAKE), client().register_script(HAND_ON)
