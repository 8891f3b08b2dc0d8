"""Beat's half of a schedule: due ticks become runs, in batches, and their messages go out.

Each active import keeps the next tick beat has not dispatched yet (`next_run_at`, indexed).
A beat loop takes the due ones, oldest first, a batch at a time, with `FOR UPDATE SKIP LOCKED`:
in one transaction it creates their runs (one per tick, keyed by (import, tick)) and advances
each `next_run_at` past the ticks it handled; after the commit it publishes the runs' messages
in one pipelined round trip. The cost of a loop follows the number of due ticks, not the number
of schedules, and several beats can share the work: a locked import is simply another beat's.

A tick dispatched within `MISSED_TICK_GRACE_SECONDS` is on time, however late, and its run
records the tick it was due for. Ticks older than that were missed (beat was down or stalled):
they are counted on the import, which is late until a tick is dispatched on time again, and the
import's `catchup` policy decides: `coalesce` runs once for all of them (trigger `catchup`: the
run of a tick due now anyway, or else of the latest missed one); `skip` runs none of them. A run
committed whose message never reached a worker is found by schedules.reconcile.

A tick of an import whose earlier run still waits for a worker (queued, never started) gets its
run `skipped` at once, without a message: the waiting run takes the file after this tick anyway.
(Its words say what the earlier run waits for: a worker, its turn, or the broker, which refused
its message: services.MESSAGE_NOT_SENT.)
Without workers (a failed deploy at night) the queue so holds one message per import, however
long the outage, where it grew by one per tick: 120 per import on a one-minute schedule after two
hours, all run in turn when workers came back, while a Redis with a memory cap filled up.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import Min
from django.db.models.fields.json import KeyTextTransform
from redis.exceptions import RedisError

from common import database_clock, error_words, owner_lines, redis_client

from .models import ImportRun, ScheduledImport
from .ticks import Schedule

logger = logging.getLogger("importbeat.beat")

# On-time ticks one import may produce in one pass (an interval far shorter than the grace
# period); the rest stay due and are taken by the next pass.
MAX_ON_TIME = 100

# Fields beat needs to plan ticks and to build a run's message (services.run_message).
PLAN_FIELDS = (
    "id", "owner_id", "name", "status", "schedule_type", "cron_expression", "interval_seconds",
    "timezone", "catchup", "next_run_at", "late_since", "timeout_seconds",
)  # fmt: skip


@dataclass
class TickPlan:
    """What one pass does for one import."""

    runs: list[tuple[datetime, str]]  # (tick, trigger)
    next_run_at: datetime
    missed: int = 0
    # The ticks counted as missed lie within (from, until), both included.
    counted: tuple[datetime, datetime] | None = None

    @property
    def on_time(self) -> bool:
        return any(trigger == ImportRun.Trigger.SCHEDULE for _tick, trigger in self.runs)


def plan_ticks(
    schedule: Schedule, due: datetime, now: datetime, grace: timedelta, catchup: str
) -> TickPlan:
    """The runs for the ticks from `due` (the first undispatched one) up to `now`."""
    cutoff = now - grace
    if due > cutoff:
        on_time = [due, *schedule.ticks_between(due, now, MAX_ON_TIME - 1)]
        return TickPlan(
            runs=[(tick, ImportRun.Trigger.SCHEDULE) for tick in on_time],
            next_run_at=schedule.next_after(on_time[-1]),
        )
    missed = schedule.missed_from(due, cutoff)
    on_time = schedule.ticks_between(cutoff, now, MAX_ON_TIME)
    runs = [(tick, ImportRun.Trigger.SCHEDULE) for tick in on_time]
    if catchup == ScheduledImport.Catchup.COALESCE:
        # The missed ticks run once: as the run of a tick due now anyway, or of the latest one
        # (first_to_run, which next_runs lists first: one rule for both).
        first = schedule.first_to_run(due, now, grace, coalesce=True)
        runs[:1] = [(first, ImportRun.Trigger.CATCHUP)]
    return TickPlan(
        runs=runs,
        next_run_at=schedule.next_after(on_time[-1] if on_time else cutoff),
        missed=missed,
        counted=(due, cutoff),
    )


@dataclass
class DispatchResult:
    runs: int = 0
    imports: int = 0
    missed: int = 0
    late: list[int] = field(default_factory=list)


Publisher = Callable[[Sequence[ImportRun]], None]


def dispatch_due(publish: Publisher | None = None, batch_size: int | None = None) -> DispatchResult:
    """Dispatch every tick due now, a batch of imports per transaction."""
    from .services import BrokerUnavailable

    publish = publish or publish_runs
    batch_size = batch_size or settings.BEAT_DISPATCH_BATCH
    result = DispatchResult()
    while True:
        runs, imports, missed, late = _dispatch_batch(batch_size)
        if runs:
            try:
                publish(runs)
            except BrokerUnavailable as error:
                # The runs are committed, and say so (services.send_again_at_next_reconcile):
                # reconciliation sends their messages once the broker is back.
                logger.error(
                    "beat could not publish %s runs: %s; reconciliation sends them once the "
                    "broker takes messages", len(runs), error,
                )  # fmt: skip
            except Exception as error:
                logger.error("beat could not publish %s runs: %s", len(runs), error)
        result.runs += len(runs)
        result.imports += imports
        result.missed += missed
        result.late += late
        if imports < batch_size:
            return result


def _dispatch_batch(batch_size: int) -> tuple[list[ImportRun], int, int, list[int]]:
    # The database's time, not this host's: a beat whose clock was fast fired imports early.
    now = database_clock.now()
    grace = timedelta(seconds=settings.MISSED_TICK_GRACE_SECONDS)
    with transaction.atomic():
        imports = list(
            ScheduledImport.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(status=ScheduledImport.Status.ACTIVE, next_run_at__lte=now)
            .order_by("next_run_at")
            .only(*PLAN_FIELDS)[:batch_size]
        )
        if not imports:
            return [], 0, 0, []
        # Imports that share a rule and a due tick share a plan (most schedules are a few
        # common rules: every minute, hourly, daily).
        memo: dict[tuple, TickPlan] = {}
        plans = {}
        for imp in imports:
            key = (imp.schedule, imp.next_run_at, imp.catchup)
            if key not in memo:
                memo[key] = plan_ticks(imp.schedule, imp.next_run_at, now, grace, imp.catchup)
            plans[imp.pk] = memo[key]
        runs = _create_runs(imports, plans, now)
        runs = _fold_into_waiting_runs(runs, now)
        _advance(plans, now)
        late = [imp.pk for imp in imports if plans[imp.pk].missed and imp.late_since is None]
        missed = sum(plan.missed for plan in plans.values())
        if missed:
            _log_missed(imports, plans, missed)
        if late:
            transaction.on_commit(lambda: _tell_owners_late(late))
    return runs, len(imports), missed, late


def _tell_owners_late(import_ids: list[int]) -> None:
    """Hand the late streaks' notifications to a worker, in one message: made here, in beat's
    process before it published the batch's runs, they slowed its dispatch fifteen times
    after an outage (2.5-3.5 s a batch of 1,000 imports, against 0.16 s) and held back the
    catch-up runs. Made here after all when the broker refuses the message."""
    from celery import current_app

    from . import notifications
    from .after_commit import why_for_the_log

    try:
        # In id order: one message whatever order the batch's rows came in (PostgreSQL's plan).
        current_app.send_task(LATE_TASK, args=[sorted(import_ids)])
    except Exception as error:  # the broker: the owners are told all the same, from here
        logger.warning(
            "late notifications made by beat itself, for the sweep's next pass to send: %s",
            why_for_the_log(error),
        )
        # Not asked of the refusing broker again (a second refusal, said twice).
        notifications.on_imports_late(import_ids, broker_refused=True)


LATE_TASK = "importbeat.notify_late_imports"


# After an outage of thousands of imports, one line per batch, not one per import.
MISSED_LOG_EXAMPLES = 10


def _log_missed(imports: list[ScheduledImport], plans: dict[int, TickPlan], missed: int) -> None:
    behind = [imp for imp in imports if plans[imp.pk].missed]
    examples = " ".join(
        f"import={imp.pk}:count={plans[imp.pk].missed}:catchup={imp.catchup}"
        f":since={imp.next_run_at.isoformat()}"
        for imp in behind[:MISSED_LOG_EXAMPLES]
    )
    more = len(behind) - MISSED_LOG_EXAMPLES
    logger.warning(
        "missed ticks count=%s imports=%s %s%s",
        missed, len(behind), examples, f" and {more} more imports" if more > 0 else "",
    )  # fmt: skip


def _create_runs(
    imports: list[ScheduledImport], plans: dict[int, TickPlan], now: datetime
) -> list[ImportRun]:
    """One queued run per planned tick, except ticks that already have one."""
    wanted = [(imp, tick, trigger) for imp in imports for tick, trigger in plans[imp.pk].runs]
    if not wanted:
        return []
    existing = set(
        ImportRun.objects.filter(
            scheduled_import_id__in=[imp.pk for imp in imports],
            scheduled_for__in={tick for _imp, tick, _trigger in wanted},
        ).values_list("scheduled_import_id", "scheduled_for")
    )
    runs = [
        ImportRun(
            scheduled_import=imp,
            trigger=trigger,
            scheduled_for=tick,
            queued_at=now,
            celery_task_id=str(uuid.uuid4()),
        )
        for imp, tick, trigger in wanted
        if (imp.pk, tick) not in existing
    ]
    _insert_runs(runs)
    return runs


def _fold_into_waiting_runs(runs: list[ImportRun], now: datetime) -> list[ImportRun]:
    """The runs still to send: a new run of an import that has a run waiting for its first
    attempt (an earlier one, or the first new one) is skipped at once, naming that run, and
    why it waits: its turn, a worker, or the broker that refused its message."""
    if not runs:
        return runs
    from .services import MESSAGE_NOT_SENT, WAITING_ITS_TURN

    # A run waiting its turn notes it at each look (every 10 s at most): a note older than the
    # grace period is a run nobody looks at any more, a backlog like any other.
    noted_since = now - timedelta(seconds=settings.MISSED_TICK_GRACE_SECONDS)

    def taking_its_turn(message: str, noted_at: datetime | None) -> str:
        fresh = noted_at is not None and noted_at >= noted_since
        return message if fresh and message.startswith(WAITING_ITS_TURN) else ""

    waiting = {
        import_id: (pk, queued_at, taking_its_turn(message, noted_at), not_sent or "")
        for import_id, pk, queued_at, message, noted_at, not_sent in ImportRun.objects.filter(
            scheduled_import_id__in={run.scheduled_import_id for run in runs},
            status=ImportRun.Status.QUEUED,
            started_at__isnull=True,
        )
        .exclude(pk__in=[run.pk for run in runs])
        .annotate(not_sent=KeyTextTransform(MESSAGE_NOT_SENT, "error_details"))
        .order_by("queued_at")
        .values_list(
            "scheduled_import_id", "pk", "queued_at", "error_message", "heartbeat_at", "not_sent"
        )
    }
    to_send, skipped, oldest = [], [], now
    behind_workers = taking_turns = behind_broker = together = 0
    sending: set[int] = set()
    for run in sorted(runs, key=lambda run: (run.scheduled_import_id, run.scheduled_for)):
        earlier = waiting.get(run.scheduled_import_id)
        if earlier is None:
            waiting[run.scheduled_import_id] = (run.pk, run.queued_at, "", "")
            sending.add(run.pk)
            to_send.append(run)
            continue
        skipped.append((run, _waits_words(*earlier)))
        if earlier[0] in sending:
            # Due together in this pass (beat behind its ticks, within the grace period: one
            # longer than the schedule's period): no run waits for a worker. Counted as a
            # backlog, /health said `degraded` ten minutes and the log asked whether the
            # workers ran, of a beat that was only late.
            together += 1
        elif earlier[2]:
            taking_turns += 1
        elif earlier[3]:
            behind_broker += 1
        else:
            behind_workers += 1
            oldest = min(oldest, earlier[1])
    if skipped:
        _skip_runs(skipped, now)
    if together:
        logger.info(
            "ticks skipped count=%s: due together with an earlier tick of their import in this "
            "pass (within MISSED_TICK_GRACE_SECONDS); its run takes the file after them",
            together,
        )
    if taking_turns:
        # One owner over their cap, or an import's run in progress, is no backlog of the
        # cluster's: those runs take turns.
        logger.info(
            "ticks skipped count=%s: their imports' earlier runs wait their turn (their owner's "
            "cap, MAX_RUNNING_PER_OWNER, or their import's run in progress)",
            taking_turns,
        )
    if behind_broker:
        # No backlog of the workers' either (/health would ask whether they run): the broker's
        # refusal is said where it happened (services.send_runs), and on the runs.
        logger.warning(
            "ticks skipped count=%s: their imports' earlier runs wait for the broker to take "
            "their messages (it refused them; reconciliation sends them once it takes messages)",
            behind_broker,
        )
    if behind_workers:
        logger.warning(
            "ticks skipped count=%s: their imports' earlier runs have not started (a backlog: "
            "are the workers running? or a run's message was lost, which reconciliation sends "
            "again after MISSED_TICK_GRACE_SECONDS)",
            behind_workers,
        )
        transaction.on_commit(lambda: _note_backlog(behind_workers, now, oldest))
    return to_send


def _note_backlog(skipped: int, now: datetime, oldest_waiting: datetime) -> None:
    """Count the skipped ticks where /health and /metrics read them (BACKLOG_KEY)."""
    try:
        pipe = redis_client.client().pipeline(transaction=True)
        pipe.hincrby(redis_client.BACKLOG_KEY, "skipped", skipped)
        pipe.hsetnx(redis_client.BACKLOG_KEY, "since", now.timestamp())
        pipe.hset(
            redis_client.BACKLOG_KEY,
            mapping={"last": now.timestamp(), "waiting_since": oldest_waiting.timestamp()},
        )
        pipe.expire(redis_client.BACKLOG_KEY, redis_client.BACKLOG_SAID_SECONDS)
        pipe.execute()
    except RedisError as error:
        # The runs say it, and the log above: only /health's word is missing.
        logger.warning("the backlog not noted: %s", error_words.redis_for_the_log(error))


def _waits_words(run_id: int, queued_at: datetime, waiting_note: str, not_sent: str) -> str:
    """`waiting_note`: the earlier run's note of why it waits its turn, if it does; `not_sent`:
    why the broker did not take its message, if it did not (services.MESSAGE_NOT_SENT)."""
    queued = f"skipped: run {run_id} of this import, queued at {queued_at:%Y-%m-%d %H:%M:%S} UTC"
    if waiting_note:
        return f"{queued}, still {waiting_note}; it takes the file after this tick"
    if not_sent:
        return (
            f"{queued}, still waits for the broker to take its message ({not_sent}), and takes "
            "the file after this tick"
        )
    return f"{queued}, still waits for a worker, and takes the file after this tick"


def _skip_runs(skipped: list[tuple[ImportRun, str]], now: datetime) -> None:
    table = ImportRun._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            UPDATE {table} AS r
               SET status = %s, finished_at = %s, duration_ms = 0, error_message = v.reason
              FROM unnest(%s::bigint[], %s::text[]) AS v(id, reason)
             WHERE r.id = v.id
            """,
            [
                ImportRun.Status.SKIPPED.value,
                now,
                [run.pk for run, _reason in skipped],
                [reason for _run, reason in skipped],
            ],
        )
    from . import services

    for run, reason in skipped:
        services.log_ended_unstarted(
            [(run.scheduled_import_id, run.pk, run.trigger)], ImportRun.Status.SKIPPED, reason
        )


# The columns that differ between the runs of one batch; every other column takes the value a
# new ImportRun has by default, whatever columns the model gains.
VARYING = ("scheduled_import", "trigger", "scheduled_for", "queued_at", "celery_task_id")


def _insert_runs(runs: list[ImportRun]) -> None:
    """One INSERT for the batch's runs, sending each varying column as one array.

    Django's bulk_create compiles every value of every row (a quarter of beat's time at 10,000
    runs); here the constant columns go once and the varying ones as arrays.
    """
    if not runs:
        return
    fields = [f for f in ImportRun._meta.concrete_fields if not f.primary_key]
    varying = [f for f in fields if f.name in VARYING]
    constant = [f for f in fields if f.name not in VARYING]
    template = ImportRun()
    arrays = [
        [f.get_db_prep_save(getattr(run, f.attname), connection) for run in runs] for f in varying
    ]
    types = [f.db_type(connection) for f in varying]
    columns = ", ".join(connection.ops.quote_name(f.column) for f in (*varying, *constant))
    unnest = ", ".join(f"%s::{kind}[]" for kind in types)
    names = ", ".join(f"v{i}" for i in range(len(varying)))
    selected = ", ".join([*(f"v{i}" for i in range(len(varying))), *("%s" for _ in constant)])
    table = connection.ops.quote_name(ImportRun._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} ({columns}) "
            f"SELECT {selected} FROM unnest({unnest}) AS v({names}) "
            f"RETURNING id, celery_task_id",
            [
                *[f.get_db_prep_save(getattr(template, f.attname), connection) for f in constant],
                *arrays,
            ],
        )
        ids = {task_id: pk for pk, task_id in cursor.fetchall()}
    for run in runs:
        run.pk = ids[run.celery_task_id]
        run._state.adding = False


def _advance(plans: dict[int, TickPlan], now: datetime) -> None:
    """Move each import's next tick past the ones handled; count misses (and note which, for
    reconciliation not to count them again); start or end lateness."""
    table = ScheduledImport._meta.db_table
    ids = list(plans)
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            UPDATE {table} AS i
               SET next_run_at = v.next_run_at,
                   missed_ticks = i.missed_ticks + v.missed,
                   missed_while_late = CASE
                       WHEN v.missed > 0 AND i.late_since IS NULL THEN v.missed
                       ELSE i.missed_while_late + v.missed END,
                   late_since = CASE
                       WHEN v.missed > 0 THEN COALESCE(i.late_since, %s)
                       WHEN v.on_time THEN NULL
                       ELSE i.late_since END,
                   missed_counted_from = CASE
                       WHEN v.missed = 0 THEN i.missed_counted_from
                       -- The range counted before, reconciliation not past it yet, is kept
                       -- within: a second outage before reconciliation's look made it count
                       -- the first one's ticks again, and an import on time again turned late.
                       -- (The ticks between the two had their runs.)
                       WHEN i.missed_counted_until
                            > COALESCE(i.reconciled_until, '-infinity'::timestamptz)
                       THEN LEAST(i.missed_counted_from, v.counted_from)
                       ELSE v.counted_from END,
                   missed_counted_until = CASE
                       WHEN v.missed > 0 THEN v.counted_until ELSE i.missed_counted_until END
              FROM unnest(%s::bigint[], %s::timestamptz[], %s::int[], %s::bool[],
                          %s::timestamptz[], %s::timestamptz[])
                   AS v(id, next_run_at, missed, on_time, counted_from, counted_until)
             WHERE i.id = v.id
            """,
            [
                now,
                ids,
                [plans[pk].next_run_at for pk in ids],
                [plans[pk].missed for pk in ids],
                [plans[pk].on_time for pk in ids],
                [plans[pk].counted[0] if plans[pk].counted else None for pk in ids],
                [plans[pk].counted[1] if plans[pk].counted else None for pk in ids],
            ],
        )


def publish_runs(runs: Sequence[ImportRun]) -> None:
    """Put the runs' messages on the broker in one pipelined round trip; an owner's runs past
    MAX_RUNNING_PER_OWNER in the batch go to the owner's line instead (common.owner_lines).

    A worker would only park those in the line, a message and a look each: another user's run
    queued behind one owner's 5,000 due runs waited for those first looks. The owner's first
    runs are sent, and each that ends sends the next in line (tasks.fairness.hand_on); a line
    whose runs nobody sends is the sweep's. Without Redis every run is sent, as before.
    """
    from . import services

    lined = _line_up_past_the_cap(runs)
    services.send_runs([run for run in runs if run.pk not in lined] if lined else runs)


def _line_up_past_the_cap(runs: Sequence[ImportRun]) -> set[int]:
    """Put each owner's runs past the cap (the later ones) in the owner's line, noted as
    waiting their turn, their heartbeat ahead as a worker's parking sets it (reconciliation
    does not take them for lost messages, and past it sends them only if they left their
    line); their ids."""
    cap = settings.MAX_RUNNING_PER_OWNER
    if cap <= 0 or len(runs) <= cap:
        return set()
    of_owner: dict[int, list[int]] = {}
    for run in runs:
        of_owner.setdefault(run.scheduled_import.owner_id, []).append(run.pk)
    past = {owner: sorted(ids)[cap:] for owner, ids in of_owner.items() if len(ids) > cap}
    if not past:
        return set()
    try:
        owner_lines.join(past)
    except RedisError as error:
        logger.warning(
            "runs past their owner's cap sent, not lined up: %s",
            error_words.redis_for_the_log(error),
        )
        return set()
    lined = [pk for ids in past.values() for pk in ids]
    ahead = database_clock.now() + timedelta(seconds=owner_lines.alive_seconds())
    try:
        with connection.cursor() as cursor:
            cursor.execute(_NOTE_LINED_UP, [_lined_up_words(cap), ahead, lined])
    except DatabaseError as error:
        # In their lines all the same: reconciliation finds them there and sends none of them.
        logger.warning("runs lined up past their owner's cap not noted: %s", error)
    logger.info("runs lined up past their owner's cap count=%s owners=%s", len(lined), len(past))
    return set(lined)


def _lined_up_words(cap: int) -> str:
    from .services import WAITING_ITS_TURN

    return (
        f"{WAITING_ITS_TURN} more than {cap} runs of this owner due at once, at most {cap} at "
        f"once {owner_lines.PARKED_NOTE_END}"
    )


_NOTE_LINED_UP = (
    f"UPDATE {ImportRun._meta.db_table} SET error_message = %s, heartbeat_at = %s"
    f" WHERE id = ANY(%s) AND status = '{ImportRun.Status.QUEUED.value}'"
)


def seconds_until_due(cap: float) -> float:
    """How long beat may sleep before the next tick of any active import is due."""
    due = ScheduledImport.objects.filter(status=ScheduledImport.Status.ACTIVE).aggregate(
        at=Min("next_run_at")
    )["at"]
    if due is None:
        return cap
    return max(0.0, min(cap, (due - database_clock.now()).total_seconds()))
