"""Fairness: at most MAX_RUNNING_PER_OWNER runs of one owner execute at once (SPEC section 4).

Without it one user's slow imports could take every worker slot and hold everyone else's runs
back. A run over the cap is not failed: it waits its turn in its owner's line, and the run
stays `queued` (or `retrying`) with a note saying why it waits, until a slot of its owner frees.

The count is the owner's `running` runs in the database plus the runs admitted in the last
ADMITTED_SECONDS that have not been claimed yet (a Redis hash), taken under a short per-owner
Redis lock, so two workers admitting at the same moment cannot both take the last slot.

The line (common.owner_lines, a Redis sorted set per owner) holds the runs over the cap. A run
found over it is parked there by the same script that frees the lock (`admit`), and its task
ends in RETRY ("waiting its turn", in Flower too) without a message of its own; whatever ends
a delivery of the owner's runs that may have held a slot (the run finished, failed, was
retried, skipped, cancelled, timed out, or gave its admission back) then calls `hand_on`,
which, under the same lock, counts the owner's free slots, admits that many of the first
parked runs still waiting (a cancelled one leaves the line, not started) and sends their
messages again, under their ids. So each run costs one message more at most, however long the
wait: a run over the cap came back as a Celery retry every few seconds before, and one owner's
5,000 runs were a churn of messages (110 looks a second) that another user's message waited
90 s behind. Beat puts an owner's runs past the cap in one batch into the line directly
(schedules.dispatch.publish_runs).

Nothing parked waits for ever: the sweep (`look_after_lines`) hands on in each line whose owner
has a slot free (a worker killed before it handed on, a run ended by the sweep; a run killed
at its hard time limit hands on from the worker's main process, tasks.killed_runs), in a few
round trips per such owner, however many runs are parked. A parked run's heartbeat is set
ahead once, at parking (owner_lines.alive_seconds), and reconciliation, finding it untouched
past that, sends it again only if it is no longer in its line (lost with a Redis restarted
empty); else it sets it ahead again. Without Redis the cap is not enforced.

An admitted run holds its slot until its delivery ends (`hand_on` drops it then: a run that
backs off holds none) or until it shows `running`, for ADMITTED_SECONDS at most; a run
`hand_on` sent holds it while its message waits in the broker, for SENT_SECONDS at most, so
that the sweep does not send more of a line behind messages still on their way.

This module keeps its own SQL (STYLE rule 15): the owner's slot count and the wait note on
the run row.
"""

from __future__ import annotations

import itertools
import logging
import time
import uuid
from datetime import timedelta
from functools import cache

from django.conf import settings
from django.db import DatabaseError, connection
from redis.commands.core import Script
from redis.exceptions import LockError, RedisError

from common import database_clock, owner_lines
from common.redis_client import client
from schedules import services
from schedules.models import ImportRun, ScheduledImport

logger = logging.getLogger("importbeat.runs")

# An admitted run has this long to show as `running` in the database before its slot is free.
ADMITTED_SECONDS = 60
# A run sent from its owner's line (hand_on) holds its slot this long at most while its message
# waits in the broker behind other users' runs: the sweep sent `cap` more of the line at each
# pass once the first ones' ADMITTED_SECONDS were over. A send lost on the way frees the slot
# after this long, and the sweep sends the next one.
SENT_SECONDS = 600
WAITING_STATUSES = (ImportRun.Status.QUEUED, ImportRun.Status.RETRYING)
# The parked runs `hand_on` looks at a time (the first ones may have been cancelled), and the
# looks it takes at most.
WINDOW = 100
MAX_LOOKS = 50


def admit(run: ImportRun, worker: str = "") -> bool:
    """Whether `run` may start now under its owner's cap; if not, it is parked in its owner's
    line, and noted on the run why it waits and which `worker` parked it.

    Fails open: without Redis the cap is not enforced (the run's own lease already needed
    Redis, so this is a blip, and fairness is not worth failing a run for).
    """
    cap = settings.MAX_RUNNING_PER_OWNER
    if cap <= 0:
        return True
    owner_id = run.scheduled_import.owner_id
    keys = _keys(owner_id)
    token = uuid.uuid4().hex
    try:
        admitted_at = _enter(keys, token)
        try:
            busy, done = _busy_runs(owner_id, admitted_at)
            busy.discard(run.pk)
            admitted = len(busy) < cap
        except BaseException:
            _leave(keys=keys, args=[token, "", "", "", owner_id])
            raise
        admit_as, park_as = (str(run.pk), "") if admitted else ("", str(run.pk))
        _leave(
            keys=keys,
            args=[token, admit_as, database_clock.timestamp() + ADMITTED_SECONDS, park_as,
                  owner_id, *done],
        )  # fmt: skip
    except RedisError as error:
        logger.warning("per-owner cap not checked run=%s: %s", run.pk, error)
        return True
    if not admitted:
        _note_waiting(run, len(busy), cap, worker)
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


def hand_on(owner_id: int, ended: int | None = None) -> int:
    """Send the first parked runs of `owner_id` that are still waiting, as many as the owner
    has slots free, each admitted (its slot held for it until its message comes); the number
    sent. Called by whatever ends a delivery of the owner's runs that may have held a slot
    (`ended`, that delivery's run: its admission is over, so a run that backs off or gave its
    admission back holds no slot), and by the sweep; in one round trip when the owner's line is
    empty. Never fails: a line not looked at now is the sweep's."""
    if settings.MAX_RUNNING_PER_OWNER <= 0:
        return 0
    return _hand_on(owner_id, settings.MAX_RUNNING_PER_OWNER, ended)


def _hand_on(owner_id: int, cap: int, ended: int | None = None) -> int:
    """hand_on under the cap `cap` (0: none, every parked run goes)."""
    try:
        runs = _call_next(owner_id, cap, ended)
    except (RedisError, DatabaseError) as error:
        logger.warning("parked runs of owner=%s not looked at (the sweep does): %s",
                       owner_id, error)  # fmt: skip
        return 0
    if not runs:
        return 0
    try:
        services.send_runs(runs, sent_events=True)
    except services.BrokerUnavailable as error:
        # send_runs left them to reconciliation's next pass.
        logger.warning("parked runs of owner=%s not sent: %s", owner_id, error)
        return 0
    logger.info("parked runs sent owner=%s runs=%s", owner_id, [run.pk for run in runs])
    return len(runs)


def look_after_lines() -> int:
    """The sweep's look at the owners' lines: hand on in each line whose owner has fewer runs
    `running` than the cap (an emptied line is forgotten at the same look); the number of
    parked runs sent.

    Its cost follows the owners with a line, not the runs in them: the owners (one round
    trip), their running runs (one query), and for each owner below the cap hand_on's look at
    the first WINDOW parked runs. It writes no parked run: their heartbeats were set ahead at
    parking, and reconciliation sets them ahead again while they are in their line. A parked
    run no longer waiting (cancelled, deleted, started by a message sent again) leaves its
    line when it comes to its head. A run this sweep (or a run's end) sent holds its slot while
    its message is on its way (SENT_SECONDS), so a line behind a long queue of other users'
    messages is not sent again at each pass.
    """
    try:
        _lines_kept_or_rebuilt()
    except (RedisError, DatabaseError) as error:
        # The lines there are still handed on in; the next pass tries again.
        logger.warning("owners' lines not put back from the database: %s", error)
    try:
        owners = sorted(int(owner) for owner in client().smembers(owner_lines.LINES))
    except RedisError as error:
        logger.warning("owners' lines not looked at: %s", error)
        return 0
    if not owners:
        return 0
    try:
        running = _running_per_owner(owners)
    except DatabaseError as error:
        logger.warning("owners' lines not looked at: %s", error)
        return 0
    cap = settings.MAX_RUNNING_PER_OWNER
    # An owner at the cap hands on when a run of theirs ends.
    to_look = [owner_id for owner_id in owners if cap <= 0 or running.get(owner_id, 0) < cap]
    if cap > 0 and to_look:
        try:
            to_look = _with_slots_free(to_look, running, cap)
        except (RedisError, DatabaseError) as error:
            logger.warning("owners' slots not counted before their lines are looked at: %s", error)
    sent = 0
    deadline = time.monotonic() + LOOK_SECONDS
    for owner_id in _from_where_the_last_pass_stopped(to_look):
        sent += _hand_on(owner_id, max(cap, 0))
        if time.monotonic() > deadline:
            # The rest at the next pass, from here: the pass stays well inside the sweep's
            # time limit, and a cut pass does not serve the same owners first each time.
            _stopped_at(owner_id)
            logger.warning("sweep looked at owners' lines for %ss; the rest at its next pass",
                           LOOK_SECONDS)  # fmt: skip
            break
    else:
        _stopped_at(None)
    if sent:
        logger.warning("sweep sent parked runs count=%s (their owners had slots free)", sent)
    return sent


# A pass of the sweep looks at owners' lines this long at most (its task's soft limit is 120 s;
# 10,000 owners with slots free took 64 s), then goes on from there at its next pass.
LOOK_SECONDS = 30
# The owner the last pass cut short stopped at (Redis), where the next one begins.
STOPPED_AT = "importbeat:owner_lines:stopped_at"
# Owners' admissions read per round trip.
ADMISSIONS_CHUNK = 1000


def _with_slots_free(owners: list[int], running: dict[int, int], cap: int) -> list[int]:
    """The `owners` whose runs running and runs admitted still waiting to start (those sent from
    a line among them: SENT_SECONDS) are fewer than `cap`. Their admissions in a few round trips,
    whether those runs still wait in one query: each owner's own look cost three statements and
    two scripts, and 10,000 owners whose sent runs waited in a long queue took 11 s a pass, every
    pass, for nothing."""
    now = database_clock.timestamp()
    admitted: dict[int, list[int]] = {}
    redis = client()
    for start in range(0, len(owners), ADMISSIONS_CHUNK):
        chunk = owners[start : start + ADMISSIONS_CHUNK]
        with redis.pipeline(transaction=False) as pipe:
            for owner_id in chunk:
                pipe.hgetall(_admitted_key(owner_id))
            answers = pipe.execute()
        for owner_id, entries in zip(chunk, answers, strict=True):
            live = [int(run_id) for run_id, until in entries.items() if float(until) > now]
            if live:
                admitted[owner_id] = live
    if not admitted:
        return owners
    with connection.cursor() as cursor:
        cursor.execute(STILL_WAITING, [[run for runs in admitted.values() for run in runs]])
        waiting = set(cursor.fetchall())
    return [
        owner_id
        for owner_id in owners
        if running.get(owner_id, 0)
        + sum((run, owner_id) in waiting for run in admitted.get(owner_id, ()))
        < cap
    ]


def _from_where_the_last_pass_stopped(owners: list[int]) -> list[int]:
    try:
        stopped = client().get(STOPPED_AT)
    except RedisError:
        return owners
    if stopped is None:
        return owners
    after = [owner_id for owner_id in owners if owner_id > int(stopped)]
    return after + [owner_id for owner_id in owners if owner_id <= int(stopped)]


def _stopped_at(owner_id: int | None) -> None:
    try:
        if owner_id is None:
            client().delete(STOPPED_AT)
        else:
            client().set(STOPPED_AT, owner_id, ex=3600)
    except RedisError as error:
        logger.warning("where the owners' lines were left is not kept: %s", error)


def _lines_kept_or_rebuilt() -> None:
    """Put the parked runs back in their owners' lines when Redis lost them (restarted empty,
    flushed): the key KEPT, set with no expiry once the lines are known whole, is gone with
    them. Each parked run waited until reconciliation found it out of its line, about 12
    minutes, and the owner's newer runs overtook it (restart hunt). Read from the database in
    the order they were queued, REBUILD_CHUNK runs a statement and a Redis write: one write of
    an owner's 524,287 runs or more is refused by Redis before 7.0, and one of 5,000,000 held
    Redis 21 s (review). One GET and one INFO a pass otherwise. Raises RedisError or
    DatabaseError."""
    if owner_lines.whole():
        return
    parked = ImportRun.objects.filter(
        status__in=WAITING_STATUSES,
        error_message__startswith=services.WAITING_ITS_TURN,
        error_message__endswith=owner_lines.PARKED_NOTE_END,
    ).order_by("pk")
    # One statement read as it goes (a cursor on the server): a statement per chunk re-read
    # every run in progress to find the chunk's (the index is in queued_at order), so the
    # rebuild grew with the square of the runs parked (scale hunt: 50 chunks at 500,000).
    rows = parked.values_list("pk", "scheduled_import__owner_id").iterator(chunk_size=REBUILD_CHUNK)
    runs, owners = 0, set()
    while chunk := list(itertools.islice(rows, REBUILD_CHUNK)):
        of_owners: dict[int, list[int]] = {}
        for run_id, owner_id in chunk:
            of_owners.setdefault(owner_id, []).append(run_id)
        owner_lines.join(of_owners)
        runs += len(chunk)
        owners |= of_owners.keys()
    if runs:
        logger.warning("owners' lines put back from the database (Redis had lost them) "
                       "runs=%s owners=%s", runs, len(owners))  # fmt: skip
    owner_lines.note_whole()


# Parked runs read and written back at a time when Redis lost the lines.
REBUILD_CHUNK = 10_000


# The owner's admission lock, taken for a few round trips: one script takes it and reads the
# admitted runs, another writes them and frees it (a redis-py Lock, a read and a pipeline cost
# four round trips). Its expiry frees it if the worker dies holding it.
LOCK_MILLISECONDS = 10_000
# Poll the lock often: redis-py's default of 0.1 s made the second of two workers admitting
# at once wait longer than a small run lasts.
POLL_SECONDS = 0.005
# KEYS: the lock, the admitted runs, the owner's line, the owners with lines.
ENTER = """
if redis.call('set', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
    return redis.call('hgetall', KEYS[2])
end
return false
"""
# Drop the admitted entries ARGV[6:], admit ARGV[2] (unless '') until ARGV[3], park ARGV[4]
# (unless '') in the line of owner ARGV[5] (a run sent from it holds its slot no more), and free
# the lock if ARGV[1] still holds it.
LEAVE = """
if #ARGV > 5 then redis.call('hdel', KEYS[2], unpack(ARGV, 6)) end
if ARGV[2] ~= '' then redis.call('hset', KEYS[2], ARGV[2], ARGV[3]) end
if ARGV[4] ~= '' then
    redis.call('hdel', KEYS[2], ARGV[4])
    redis.call('zadd', KEYS[3], 'NX', ARGV[4], ARGV[4])
    redis.call('sadd', KEYS[4], ARGV[5])
end
if redis.call('get', KEYS[1]) == ARGV[1] then redis.call('del', KEYS[1]) end
return 1
"""
# hand_on's look: first the admission of ARGV[5] (unless ''), whose delivery ended, dropped;
# then nothing when the line is empty and nobody admits a run of the owner (the owner forgotten
# among the lines); 0 when the lock is taken (an admission may be about to park a run that
# counted the run just ended as running); else the lock taken for ARGV[1], the admitted runs and
# the first ARGV[3] parked ones.
LOOK = """
if ARGV[5] ~= '' then redis.call('hdel', KEYS[2], ARGV[5]) end
if redis.call('zcard', KEYS[3]) == 0 and redis.call('exists', KEYS[1]) == 0 then
    redis.call('srem', KEYS[4], ARGV[4])
    return false
end
if not redis.call('set', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 0 end
return {redis.call('hgetall', KEYS[2]), redis.call('zrange', KEYS[3], 0, ARGV[3] - 1)}
"""
# hand_on's call: the ARGV[4] runs after ARGV[5] leave the line admitted until ARGV[2], the next
# ARGV[6] leave it (no longer waiting), the rest are admitted entries that hold nothing; the
# owner ARGV[3] forgotten among the lines when theirs is empty, the lock freed if ARGV[1] still
# holds it. The parked runs left.
CALL = """
local called, dropped = tonumber(ARGV[4]), tonumber(ARGV[5])
for i = 6, 5 + called do
    redis.call('hset', KEYS[2], ARGV[i], ARGV[2])
    redis.call('zrem', KEYS[3], ARGV[i])
end
for i = 6 + called, 5 + called + dropped do redis.call('zrem', KEYS[3], ARGV[i]) end
for i = 6 + called + dropped, #ARGV do redis.call('hdel', KEYS[2], ARGV[i]) end
local left = redis.call('zcard', KEYS[3])
if left == 0 then redis.call('srem', KEYS[4], ARGV[3]) end
if redis.call('get', KEYS[1]) == ARGV[1] then redis.call('del', KEYS[1]) end
return left
"""


def _enter(keys: list[str], token: str) -> dict[bytes, bytes]:
    """Take the owner's admission lock (waiting up to its expiry); the admitted runs."""
    enter = _scripts()[0]
    deadline = time.monotonic() + LOCK_MILLISECONDS / 1000
    while True:
        items = enter(keys=keys, args=[token, LOCK_MILLISECONDS])
        if items is not None:
            return _pairs(items)
        if time.monotonic() > deadline:
            raise LockError("the owner's admission lock stayed taken")
        time.sleep(POLL_SECONDS)


def _leave(keys: list[str], args: list) -> None:
    """Drop the admitted entries args[5:], admit args[1] (unless "") at args[2], park args[3]
    (unless "") in owner args[4]'s line, and free the lock if args[0] still holds it."""
    _scripts()[1](keys=keys, args=args)


def _call_next(owner_id: int, cap: int, ended: int | None = None) -> list[ImportRun]:
    """Take the first parked runs of the owner still waiting out of their line, as many as the
    owner has slots free (all of them without a cap), each admitted; the runs, loaded to be
    sent (each holds its slot for SENT_SECONDS at most while its message is on its way). Looks
    again while slots are left and the line held more than it looked at. `ended`: hand_on's."""
    look, call = _scripts()[2:]
    keys = _keys(owner_id)
    called: list[ImportRun] = []
    for _look in range(MAX_LOOKS):
        token = uuid.uuid4().hex
        found = _look_at_line(look, keys, token, owner_id, "" if ended is None else ended)
        if found is None:
            return called
        admitted_at, first = found
        ids = [int(member) for member in first]
        try:
            busy, done = _busy_runs(owner_id, admitted_at)
            free = cap - len(busy) if cap > 0 else len(ids)
            waiting = _waiting_runs([i for i in ids if i not in busy], owner_id) if free > 0 else {}
        except BaseException:
            call(keys=keys, args=[token, 0, owner_id, 0, 0])
            raise
        taken = [waiting[i] for i in ids if i in waiting][:free]
        # (a run already admitted or running is taken care of; one no longer waiting leaves)
        dropped = [i for i in ids if i not in waiting] if free > 0 else []
        until = database_clock.timestamp() + SENT_SECONDS
        left = call(
            keys=keys,
            args=[token, until, owner_id, len(taken), len(dropped),
                  *(run.pk for run in taken), *dropped, *done],
        )  # fmt: skip
        if taken:
            # Out of their line, and about to have a message: touched now, so that a send
            # lost (this worker killed before it, the broker refusing it) is reconciliation's
            # a grace period from now. Left ahead as parked, a run lost so held one of its
            # owner's slots, and the owner's line, for about 12 minutes (restart hunt).
            ImportRun.objects.filter(pk__in=[run.pk for run in taken]).update(
                heartbeat_at=database_clock.now()
            )
        called += taken
        if len(taken) >= free or len(ids) < WINDOW or not left:
            return called
    return called


def _look_at_line(
    look: Script, keys: list[str], token: str, owner_id: int, ended: int | str
) -> tuple[dict[bytes, bytes], list[bytes]] | None:
    """The owner's admitted runs and first parked ones, their lock taken for `token`; None
    when the line is empty. The admission of `ended` (unless "") is dropped first."""
    deadline = time.monotonic() + LOCK_MILLISECONDS / 1000
    while True:
        found = look(keys=keys, args=[token, LOCK_MILLISECONDS, WINDOW, owner_id, ended])
        if found is None:
            return None
        if found != 0:
            return _pairs(found[0]), found[1]
        if time.monotonic() > deadline:
            raise LockError("the owner's admission lock stayed taken")
        time.sleep(POLL_SECONDS)


def _pairs(items: list[bytes]) -> dict[bytes, bytes]:
    return dict(zip(items[::2], items[1::2], strict=True))


@cache
def _scripts() -> tuple[Script, Script, Script, Script]:
    store = client()
    return tuple(store.register_script(script) for script in (ENTER, LEAVE, LOOK, CALL))


def _keys(owner_id: int) -> list[str]:
    return [
        f"importbeat:owner:{owner_id}:admit",
        _admitted_key(owner_id),
        owner_lines.line_key(owner_id),
        owner_lines.LINES,
    ]


def _admitted_key(owner_id: int) -> str:
    return f"importbeat:owner:{owner_id}:admitted"


def _busy_runs(owner_id: int, admitted_at: dict[bytes, bytes]) -> tuple[set[int], list[str]]:
    """The owner's runs that hold a slot (running, or admitted and not claimed yet), and the
    admitted entries that hold nothing any more (finished, or expired) for the caller to drop.
    An admitted entry holds the time its admission ends (ADMITTED_SECONDS after `admit`,
    SENT_SECONDS after hand_on sent the run).

    One query answers both questions the slot count asks of the database.
    """
    now = database_clock.timestamp()
    admitted = {int(k): float(v) for k, v in admitted_at.items()}
    recent = [run_id for run_id, until in admitted.items() if until > now]
    with connection.cursor() as cursor:
        cursor.execute(HOLDING_SLOTS, [owner_id, recent, owner_id])
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
_WAITING = ", ".join(repr(s.value) for s in WAITING_STATUSES)
HOLDING_SLOTS = (
    f"SELECT r.id, r.status FROM {ImportRun._meta.db_table} r"
    f" JOIN {ScheduledImport._meta.db_table} i ON i.id = r.scheduled_import_id"
    f" WHERE i.owner_id = %s AND r.status = '{ImportRun.Status.RUNNING.value}'"
    f" UNION ALL SELECT r.id, r.status FROM {ImportRun._meta.db_table} r"
    f" JOIN {ScheduledImport._meta.db_table} i ON i.id = r.scheduled_import_id"
    f" WHERE r.id = ANY(%s) AND r.status IN ({_WAITING}) AND i.owner_id = %s"
)
# Which of the runs admitted still wait to start (the sweep's count of owners' slots).
STILL_WAITING = (
    f"SELECT r.id, i.owner_id FROM {ImportRun._meta.db_table} r"
    f" JOIN {ScheduledImport._meta.db_table} i ON i.id = r.scheduled_import_id"
    f" WHERE r.id = ANY(%s) AND r.status IN ({_WAITING})"
)
# The owners' running runs, for the sweep: an owner at the cap hands on when one ends.
RUNNING_PER_OWNER = (
    f"SELECT i.owner_id, count(*) FROM {ImportRun._meta.db_table} r"
    f" JOIN {ScheduledImport._meta.db_table} i ON i.id = r.scheduled_import_id"
    f" WHERE r.status = '{ImportRun.Status.RUNNING.value}' AND i.owner_id = ANY(%s)"
    " GROUP BY i.owner_id"
)


def _waiting_runs(ids: list[int], owner_id: int) -> dict[int, ImportRun]:
    """The runs of `ids` still waiting, with what their message names of their import.

    Of the owner's imports only, as every id of a line or an admission is read: a database
    restored from a backup gives the ids of the runs made since to new runs, any owner's, and
    one left in alice's line was sent as hers (restore hunt)."""
    if not ids:
        return {}
    runs = (
        ImportRun.objects.filter(
            pk__in=ids, status__in=WAITING_STATUSES, scheduled_import__owner_id=owner_id
        )
        .select_related("scheduled_import")
        .only(
            "id", "status", "celery_task_id", "scheduled_import_id", "scheduled_import__id",
            "scheduled_import__name", "scheduled_import__timeout_seconds",
        )
    )  # fmt: skip
    return {run.pk: run for run in runs}


def _running_per_owner(owner_ids: list[int]) -> dict[int, int]:
    with connection.cursor() as cursor:
        cursor.execute(RUNNING_PER_OWNER, [owner_ids])
        return dict(cursor.fetchall())


def _note_waiting(run: ImportRun, busy: int, cap: int, worker: str) -> None:
    """Say on the parked run why it waits (services.note_waiting's words), its heartbeat ahead
    (owner_lines.alive_seconds): a parked run has no message anywhere, and reconciliation
    would look at it a grace period after the note; past that heartbeat it sends the run again
    only if it is no longer in its line."""
    logger.info("run parked run=%s owner's runs at the cap (%s)", run.pk, cap)
    why = (
        f"{busy} run{'s' if busy != 1 else ''} of this owner running, at most {cap} at once "
        f"{owner_lines.PARKED_NOTE_END}"
    )
    ahead = database_clock.now() + timedelta(seconds=owner_lines.alive_seconds())
    # Who parked it: its task's last word in Flower (RETRY) came from there, and a cancel
    # tells Flower from there that it is over (schedules.revoked_tasks).
    details = {**run.error_details, services.PARKED_BY: worker} if worker else run.error_details
    ImportRun.objects.filter(pk=run.pk, status__in=WAITING_STATUSES).update(
        error_message=f"{services.WAITING_ITS_TURN} {why}", heartbeat_at=ahead,
        error_details=details,
    )  # fmt: skip
