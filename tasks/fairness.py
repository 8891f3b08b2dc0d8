"""Fairness: at most MAX_RUNNING_PER_OWNER runs of one owner execute at once (SPEC section 4).

Without it one user's slow imports could take every worker slot and hold everyone else's runs
back. A run over the cap is not failed: its message comes back a few seconds later, and the run
stays `queued` (or `retrying`) with a note saying why it waits, until a slot of its owner frees.

The count is the owner's `running` runs in the database plus the runs admitted in the last
ADMITTED_SECONDS that have not been claimed yet (a Redis hash), taken under a short per-owner
Redis lock, so two workers admitting at the same moment cannot both take the last slot.
This module keeps its own SQL (STYLE rule 15): the owner's slot count and the wait note on
the run row.
"""

from __future__ import annotations

import logging
import time
import uuid
from functools import cache

from django.conf import settings
from django.db import connection
from redis.commands.core import Script
from redis.exceptions import LockError, RedisError

from common import database_clock
from common.redis_client import client
from schedules import services
from schedules.models import ImportRun, ScheduledImport

logger = logging.getLogger("importbeat.runs")

# An admitted run has this long to show as `running` in the database before its slot is free.
ADMITTED_SECONDS = 60
WAITING_STATUSES = (ImportRun.Status.QUEUED, ImportRun.Status.RETRYING)


def admit(run: ImportRun) -> bool:
    """Whether `run` may start now under its owner's cap; if not, note on the run why it waits.

    Fails open: without Redis the cap is not enforced (the run's own lease already needed
    Redis, so this is a blip, and fairness is not worth failing a run for).
    """
    cap = settings.MAX_RUNNING_PER_OWNER
    if cap <= 0:
        return True
    owner_id = run.scheduled_import.owner_id
    keys = [f"importbeat:owner:{owner_id}:admit", _admitted_key(owner_id)]
    token = uuid.uuid4().hex
    try:
        admitted_at = _enter(keys, token)
        try:
            busy, done = _busy_runs(owner_id, admitted_at)
            busy.discard(run.pk)
            admitted = len(busy) < cap
        except BaseException:
            _leave(keys=keys, args=[token, "", ""])
            raise
        _leave(
            keys=keys,
            args=[token, str(run.pk) if admitted else "", database_clock.timestamp(), *done],
        )
    except RedisError as error:
        logger.warning("per-owner cap not checked run=%s: %s", run.pk, error)
        return True
    if not admitted:
        _note_waiting(run, len(busy), cap)
    return admitted


def withdraw(run: ImportRun) -> None:
    """Give back the slot `run` was admitted to, when it does not start after all (its claim
    found its import busy with another run): admitted again at each look, a run waiting for
    its own import held one of its owner's slots for as long as it waited, and two such runs
    stopped all their owner's imports at a cap of 2."""
    if settings.MAX_RUNNING_PER_OWNER <= 0:
        return
    try:
        client().hdel(_admitted_key(run.scheduled_import.owner_id), str(run.pk))
    except RedisError as error:
        logger.warning("slot not given back run=%s (it frees within %ss): %s",
                       run.pk, ADMITTED_SECONDS, error)  # fmt: skip


# The owner's admission lock, taken for a few round trips: one script takes it and reads the
# admitted runs, another writes them and frees it (a redis-py Lock, a read and a pipeline cost
# four round trips). Its expiry frees it if the worker dies holding it.
LOCK_MILLISECONDS = 10_000
# Poll the lock often: redis-py's default of 0.1 s made the second of two workers admitting
# at once wait longer than a small run lasts.
POLL_SECONDS = 0.005
ENTER = """
if redis.call('set', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
    return redis.call('hgetall', KEYS[2])
end
return false
"""
LEAVE = """
if #ARGV > 3 then redis.call('hdel', KEYS[2], unpack(ARGV, 4)) end
if ARGV[2] ~= '' then redis.call('hset', KEYS[2], ARGV[2], ARGV[3]) end
if redis.call('get', KEYS[1]) == ARGV[1] then redis.call('del', KEYS[1]) end
return 1
"""


def _enter(keys: list[str], token: str) -> dict[bytes, bytes]:
    """Take the owner's admission lock (waiting up to its expiry); the admitted runs."""
    enter = _scripts()[0]
    deadline = time.monotonic() + LOCK_MILLISECONDS / 1000
    while True:
        items = enter(keys=keys, args=[token, LOCK_MILLISECONDS])
        if items is not None:
            return dict(zip(items[::2], items[1::2], strict=True))
        if time.monotonic() > deadline:
            raise LockError("the owner's admission lock stayed taken")
        time.sleep(POLL_SECONDS)


def _leave(keys: list[str], args: list) -> None:
    """Drop the admitted entries args[3:], admit args[1] (unless "") at args[2], and free the
    lock if args[0] still holds it."""
    _scripts()[1](keys=keys, args=args)


@cache
def _scripts() -> tuple[Script, Script]:
    return client().register_script(ENTER), client().register_script(LEAVE)


def _admitted_key(owner_id: int) -> str:
    return f"importbeat:owner:{owner_id}:admitted"


def _busy_runs(owner_id: int, admitted_at: dict[bytes, bytes]) -> tuple[set[int], list[str]]:
    """The owner's runs that hold a slot (running, or admitted and not claimed yet), and the
    admitted entries that hold nothing any more (finished, or expired) for the caller to drop.

    One query answers both questions the slot count asks of the database.
    """
    recent_since = database_clock.timestamp() - ADMITTED_SECONDS
    admitted = {int(k): float(v) for k, v in admitted_at.items()}
    recent = [run_id for run_id, at in admitted.items() if at > recent_since]
    with connection.cursor() as cursor:
        cursor.execute(HOLDING_SLOTS, [owner_id, recent])
        holding = cursor.fetchall()
    busy, pending = set(), set()
    for run_id, status in holding:
        busy.add(run_id)
        if status != ImportRun.Status.RUNNING:
            pending.add(run_id)
    # Running ones are counted from the database; finished, expired ones hold nothing.
    return busy, [str(run_id) for run_id in admitted if run_id not in pending]


# A UNION ALL of the two (disjoint by status), not one OR: PostgreSQL spent 2 ms planning the
# OR against the run table's partial indexes, 0.25 ms these (execution: 0.03 ms). Written once:
# the ORM took longer to compile the union than PostgreSQL to plan and run it.
HOLDING_SLOTS = (
    f"SELECT r.id, r.status FROM {ImportRun._meta.db_table} r"
    f" JOIN {ScheduledImport._meta.db_table} i ON i.id = r.scheduled_import_id"
    f" WHERE i.owner_id = %s AND r.status = '{ImportRun.Status.RUNNING.value}'"
    f" UNION ALL SELECT id, status FROM {ImportRun._meta.db_table}"
    f" WHERE id = ANY(%s) AND status IN ({', '.join(repr(s.value) for s in WAITING_STATUSES)})"
)


def _note_waiting(run: ImportRun, busy: int, cap: int) -> None:
    logger.info("run waits run=%s owner's runs at the cap (%s)", run.pk, cap)
    services.note_waiting(
        run,
        f"{busy} run{'s' if busy != 1 else ''} of this owner running, at most {cap} at once "
        "(MAX_RUNNING_PER_OWNER)",
    )
