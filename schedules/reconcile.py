"""Ticks reconciled, not trusted: the maintenance job that finds what beat's dispatch lost.

Two checks, each bounded in cost by what happened since the last pass:

- Runs whose message is gone. A queued or retrying run, not touched for the grace period (a
  retry counts from the end of its countdown), whose message is neither waiting in the broker
  nor held by a worker (schedules.broker), was lost on the way: beat died between its commit
  and its publish, the broker refused it, a message was deleted from Redis, a broker
  restarted empty. A scheduled run queued before the grace period is then a missed tick,
  handled by its import's `catchup` policy: `coalesce` sends the newest such run of the import
  again (as its catch-up run) and skips the older ones, `skip` skips them. A manual run, a
  retry, or a run whose message was refused within the grace period is sent again. This is
  the only place that sends a waiting run's message again; when the broker cannot be read,
  nothing is sent and the pass says so in the log.
- Ticks without a run. For every active import, the ticks beat has already passed (before
  `next_run_at`), since its last edit or resume and since the previous pass, at most
  RECONCILE_WINDOW_SECONDS back, are compared with the runs that exist. A tick with no run is
  a missed tick: counted, and with `coalesce` the newest one gets a catch-up run.

Every missed tick is counted on its import (`missed_ticks`), logged, and makes the import late
(`late_since`) until a tick is dispatched on time again; the owner hears once per late streak.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Func, JSONField, Q, Value
from redis.exceptions import RedisError

from common import database_clock, error_words, owner_lines

from . import after_commit, broker, import_locks, services
from .models import ImportRun, ScheduledImport, put_intervals_in_step

logger = logging.getLogger("importbeat.reconcile")

BATCH = 1000
MAX_TICKS_PER_IMPORT = 1000


def reconcile(now: datetime | None = None) -> dict[str, int]:
    now = now or database_clock.now()
    grace = timedelta(seconds=settings.MISSED_TICK_GRACE_SECONDS)
    resent, lost_ticks = recover_lost_messages(now, grace)
    gaps = find_ticks_without_runs(now, grace)
    untold = tell_late_owners_not_told(now - grace)
    if resent or lost_ticks or gaps or untold:
        logger.warning(
            "reconcile resent=%s lost_ticks=%s ticks_without_run=%s late_untold=%s",
            resent, lost_ticks, gaps, untold,
        )  # fmt: skip
    return {"resent": resent, "lost_ticks": lost_ticks, "ticks_without_run": gaps}


def tell_late_owners_not_told(late_before: datetime) -> int:
    """Make the notifications of late streaks that began before `late_before` and have none:
    beat hands them to a worker in one message (schedules.dispatch), and that message lost
    (a Redis restarted empty, its worker killed) left the owner untold for good."""
    from django.db.models import Exists

    from . import notifications

    untold = list(
        ScheduledImport.objects.filter(late_since__lt=late_before)
        .exclude(Exists(notifications.late_deliveries_of_streak()))
        .order_by("pk")
        .values_list("pk", flat=True)[:BATCH]
    )
    if untold:
        notifications.on_imports_late(untold)
    return len(untold)


# --- runs whose message is gone -----------------------------------------------------------------


def recover_lost_messages(now: datetime, grace: timedelta) -> tuple[int, int]:
    """(runs sent again, scheduled runs given up as missed ticks).

    The one recovery of lost run messages, `queued` and `retrying` alike. A retrying run's
    message is its retry, sent with a countdown: a worker holds it, unacknowledged, until it is
    due, and pending_task_ids sees it there; the run counts as untouched from the end of that
    countdown (services.mark_retrying). A message held STALE_QUEUED_SECONDS past its due time
    is counted lost: its worker was killed outright (a live one would have run it), and Redis
    would give it back only after its visibility timeout; should it come back, the claim and
    the lease let one delivery through. A message the broker refused is marked so that the
    next pass takes it (services.send_again_at_next_reconcile); a retry it refused, by what
    its run says (services.note_retry_not_sent), whatever the broker holds under its task id.
    A queued run whose message it refused says so until it is sent again (_mark_resent).
    """
    before = now - grace
    untouched = (
        ImportRun.objects.filter(status__in=services.WAITING_STATUSES)
        .filter(services.untouched_since(before))
        .select_related("scheduled_import")
    )
    # Runs parked in their owner's line (tasks.fairness) are looked at apart, oldest heartbeat
    # first, so that however many of them are untouched, no other lost message waits behind
    # them; those still in their line are set ahead again, not sent.
    parked = Q(
        error_message__startswith=services.WAITING_ITS_TURN,
        error_message__endswith=owner_lines.PARKED_NOTE_END,
    )
    waiting = list(untouched.exclude(parked).order_by("scheduled_import_id", "-queued_at")[:BATCH])
    oldest_first = F("heartbeat_at").asc(nulls_first=True)
    waiting += _out_of_their_lines(
        list(untouched.filter(parked).order_by(oldest_first, "pk")[:BATCH]), now, before
    )
    if not waiting:
        return 0, 0
    # A message held by a worker this long past its due time is presumed lost with its worker.
    held_due_before = now - timedelta(seconds=settings.STALE_QUEUED_SECONDS)
    # The live workers are asked about the runs put back to wait their turn (tasks.fairness;
    # a parked one here has left its line, above) alone: each is held by the worker that put
    # it back, a few seconds at a time, and one killed left it there 30 minutes. A message any
    # other run's worker holds waits for the 30-minute rule: a worker slow to answer would have
    # had it sent twice, a retry run before its backoff, a queued tick counted missed.
    deferred = {
        run.celery_task_id
        for run in waiting
        if run.status == ImportRun.Status.QUEUED
        and run.error_message.startswith(services.WAITING_ITS_TURN)
    }
    live = broker.held_by_live_workers(settings.HEALTH_WORKER_PING_TIMEOUT) if deferred else None
    pending = broker.pending_task_ids(
        held_due_before.timestamp(), live=live, live_due_before=before.timestamp(),
        asked_of=deferred,
    )  # fmt: skip
    if pending is None:
        # Without the broker's answer a waiting message looks like a lost one: sending it again
        # would duplicate every message of a long queue. The next pass asks again.
        logger.warning(
            "reconcile cannot tell which run messages are lost (the broker's queues cannot be "
            "read); %s runs waiting past the grace period are left as they are",
            len(waiting),
        )
        return 0, 0
    lost = [
        run for run in waiting if run.celery_task_id not in pending or services.retry_not_sent(run)
    ]
    resend: list[ImportRun] = []
    missed: dict[int, list[ImportRun]] = {}
    newest_per_import: set[int] = set()
    for run in lost:  # newest first within each import
        imp = run.scheduled_import
        if run.celery_task_id in deferred or not _is_missed_tick(run, before):
            # (a run put back to wait its turn was dispatched on time: no missed tick)
            resend.append(run)
        elif imp.pk not in newest_per_import:
            # Whatever `catchup` says: beat folded every tick since into this run, promising
            # that it "takes the file after this tick" (dispatch._fold_into_waiting_runs), so
            # it stands for the import's latest tick. Under `skip` it was skipped, and a daily
            # import lost its day's run, and the ticks folded into it theirs, to a lost message.
            newest_per_import.add(imp.pk)
            resend.append(run)
        else:
            missed.setdefault(imp.pk, []).append(run)
    counts: dict[int, int] = {}
    with transaction.atomic():
        sent: list[ImportRun] = []
        for run in resend:
            caught_up = (
                run.celery_task_id not in deferred
                and _is_missed_tick(run, before)
                and run.trigger == ImportRun.Trigger.SCHEDULE
            )
            if _mark_resent(run, now, caught_up):
                sent.append(run)
                counts[run.scheduled_import_id] = counts.get(run.scheduled_import_id, 0) + caught_up
        resend = sent
        for import_id, runs in missed.items():
            reason = "skipped: a missed tick (its message was lost before a worker took it)"
            still_queued = ImportRun.objects.filter(
                pk__in=[run.pk for run in runs], status=ImportRun.Status.QUEUED
            )
            ended = list(still_queued.values_list("scheduled_import_id", "pk", "trigger"))
            skipped = still_queued.filter(pk__in=[pk for _, pk, _ in ended]).update(
                status=ImportRun.Status.SKIPPED, finished_at=now, duration_ms=0,
                error_message=reason,
            )  # fmt: skip
            services.log_ended_unstarted(ended, ImportRun.Status.SKIPPED, reason)
            counts[import_id] = counts.get(import_id, 0) + skipped
        _count_missed(
            [(import_id, count, None) for import_id, count in counts.items() if count], now
        )
    if resend:
        # A refusal is said by send_runs in one line (it was an ERROR with a traceback).
        after_commit.send_after_commit(
            lambda: services.send_runs(resend), f"run messages runs={len(resend)}",
            "reconciliation's next pass sends them", already_said=(services.BrokerUnavailable,),
        )  # fmt: skip
        for run in resend:
            logger.warning(
                "run message lost, sent again import=%s run=%s status=%s tick=%s",
                run.scheduled_import_id, run.pk, run.status, run.scheduled_for,
            )  # fmt: skip
    return len(resend), sum(counts.values())


def _out_of_their_lines(
    parked: list[ImportRun], now: datetime, before: datetime
) -> list[ImportRun]:
    """The runs of `parked` (noted as parked in their owner's line, untouched past the grace
    period) that are in their line no more: its Redis restarted empty, or (its note outdated)
    sent from it. Those still in it have no message to lose: their heartbeat is set ahead again
    (owner_lines.alive_seconds) in one statement, those still untouched since `before`. Without
    Redis none is looked at this pass."""
    if not parked:
        return []
    of_owners: dict[int, list[int]] = {}
    for run in parked:
        of_owners.setdefault(run.scheduled_import.owner_id, []).append(run.pk)
    try:
        in_line = owner_lines.in_lines(of_owners)
    except RedisError as error:
        logger.warning(
            "runs waiting in their owner's line not looked at: %s",
            error_words.redis_for_the_log(error),
        )
        return []
    if in_line:
        ImportRun.objects.filter(pk__in=in_line, status__in=services.WAITING_STATUSES).filter(
            services.untouched_since(before)
        ).update(heartbeat_at=now + timedelta(seconds=owner_lines.alive_seconds()))
    return [run for run in parked if run.pk not in in_line]


def _is_missed_tick(run: ImportRun, before: datetime) -> bool:
    """A scheduled run that never started and was queued before the grace period: its tick
    is missed, and its import's `catchup` decides. A retry is an attempt of a run that started;
    a run whose message the broker refused within the grace period is simply sent."""
    return (
        run.status == ImportRun.Status.QUEUED
        and run.scheduled_for is not None
        and run.queued_at < before
    )


def _mark_resent(run: ImportRun, now: datetime, caught_up: bool) -> bool:
    """Touch the run (the next pass leaves it a grace period) unless it changed since it was
    read: claimed, or touched by a worker that holds its message (tasks.fairness).

    A scheduled run sent again for its missed tick becomes its import's catch-up run, as beat
    names the run of a missed tick: the tick is counted once, when that happens, however
    often its message is lost afterwards.
    """
    fields: dict[str, object] = {"heartbeat_at": now}
    if services.retry_not_sent(run):
        # Flagged again should its sending be refused again (send_again_at_next_reconcile).
        fields["error_details"] = services.without_retry_not_sent()
    elif services.message_not_sent(run):
        # Its note too, unless other words came since (a worker's: it waits its turn): sent
        # now, it waits for a worker (said again should it be refused again).
        fields["error_details"] = services.without_message_not_sent()
        why = run.error_details[services.MESSAGE_NOT_SENT]
        if run.error_message == services.message_not_sent_note(why):
            fields["error_message"] = ""
    elif run.status == ImportRun.Status.RETRYING and run.heartbeat_at is not None:
        # Its retry was due at its heartbeat: held that long past it by a worker that did not
        # run it (paused, or cut off, and alive after all), or lost. Should that worker run it
        # after all, one of the two copies finds the run claimed or ended; the run log said
        # nothing of the copy sent here (sweepnote hunt).
        late = int((now - run.heartbeat_at).total_seconds())
        fields["error_details"] = _noted_on_its_last_attempt(
            retry_sent_again=RETRY_SENT_AGAIN.format(late=late), retry_sent_again_at=now.isoformat()
        )
    if run.status == ImportRun.Status.QUEUED:
        # It has no attempt's entry to say it on: the run log said nothing of the message
        # sent again, nor why (sweep3 hunt). In the same statement.
        fields["error_details"] = _noted_on_the_run(
            fields.get("error_details", F("error_details")),
            **{
                services.RUN_SENT_AGAIN: _queued_sent_again_words(run, now, caught_up),
                services.RUN_SENT_AGAIN_AT: now.isoformat(),
            },
        )
    if caught_up:
        fields["trigger"] = ImportRun.Trigger.CATCHUP
    touched = ImportRun.objects.filter(
        pk=run.pk, status=run.status, heartbeat_at=run.heartbeat_at
    ).update(**fields)
    return touched == 1


RETRY_SENT_AGAIN = (
    "its retry was sent again by reconciliation: it had not run {late}s after it was due (its "
    "message lost, or held by a worker that did not run it); only one of the copies runs it"
)


QUEUED_SENT_AGAIN = (
    "its message was sent again by reconciliation: no worker had taken it {late}s after it was "
    "queued, and {why}{caught_up}; should the first copy come back, only one of them runs it"
)


def _queued_sent_again_words(run: ImportRun, now: datetime, caught_up: bool) -> str:
    """Why queued `run` is sent again, in words (services.RUN_SENT_AGAIN)."""
    late = int((now - run.queued_at).total_seconds())
    if services.message_not_sent(run):
        why = "the broker had refused it"
    else:
        why = "the broker held no copy of it (lost on its way, or with a broker restarted empty)"
    return QUEUED_SENT_AGAIN.format(
        late=late, why=why,
        caught_up=" (as its import's catch-up run: its tick was missed)" if caught_up else "",
    )  # fmt: skip


def _noted_on_the_run(details: Func | F, **notes: str) -> Func:
    """`details` (a run's error_details, as an expression) with `notes` set at its top."""
    noted: Func | F = details
    for name, note in notes.items():
        path = Func(Value(f"{{{name}}}"), template="%(expressions)s::text[]")
        noted = Func(
            noted, path, Value(note, JSONField()), function="jsonb_set", output_field=JSONField()
        )
    return noted


def _noted_on_its_last_attempt(**notes: str) -> Func:
    """A run's error_details with `notes` on its last attempt's entry (as they are when it has
    none), written in the statement: a note its attempt's worker writes meanwhile on another
    key is kept (services.note_sent_again_while_alive)."""
    details: Func | F = F("error_details")
    for name, note in notes.items():
        path = Func(Value(f"{{attempts,-1,{name}}}"), template="%(expressions)s::text[]")
        details = Func(
            details, path, Value(note, JSONField()), function="jsonb_set", output_field=JSONField()
        )
    return details


# --- ticks without a run ------------------------------------------------------------------------


def find_ticks_without_runs(now: datetime, grace: timedelta) -> int:
    # A changed MIN_INTERVAL_SECONDS is a schedule change first: the ticks beat planned at the
    # old one were read with the new one, and those before the tick listed counted missed.
    put_intervals_in_step()
    checked_until = now - grace
    oldest = now - timedelta(seconds=settings.RECONCILE_WINDOW_SECONDS)
    found = 0
    last_id = 0
    while True:
        imports = list(
            ScheduledImport.objects.filter(
                pk__gt=last_id,
                status=ScheduledImport.Status.ACTIVE,
                next_run_at__isnull=False,
            )
            .filter(
                Q(reconciled_until__isnull=True)
                | Q(reconciled_until__lt=checked_until, next_run_at__gt=F("reconciled_until"))
            )
            .order_by("pk")
            .only(
                "id", "schedule_type", "cron_expression", "interval_seconds", "timezone",
                "catchup", "next_run_at", "schedule_changed_at", "reconciled_until",
                "timeout_seconds", "late_since", "status", "missed_counted_from",
                "missed_counted_until",
            )[:BATCH]
        )  # fmt: skip
        if not imports:
            return found
        last_id = imports[-1].pk
        expected: dict[int, list[datetime]] = {}
        ends: dict[int, datetime] = {}
        for imp in imports:
            start = max(
                t for t in (imp.reconciled_until, imp.schedule_changed_at, oldest) if t is not None
            )
            # Ticks at or after next_run_at are beat's to dispatch, not yet anybody's to miss.
            end = min(checked_until, imp.next_run_at - timedelta(microseconds=1))
            ends[imp.pk] = max(end, start)
            if end > start:
                expected[imp.pk] = imp.schedule.ticks_between(start, end, MAX_TICKS_PER_IMPORT)
        ticks = {tick for found_ticks in expected.values() for tick in found_ticks}
        have = set(
            ImportRun.objects.filter(
                scheduled_import_id__in=list(expected), scheduled_for__in=ticks
            ).values_list("scheduled_import_id", "scheduled_for")
        ) if ticks else set()  # fmt: skip
        by_id = {imp.pk: imp for imp in imports}
        without_runs = []
        for import_id, import_ticks in expected.items():
            counted = _counted_by_beat(by_id[import_id])
            missing = [
                tick for tick in import_ticks if (import_id, tick) not in have and not counted(tick)
            ]
            if missing:
                found += len(missing)
                without_runs.append((by_id[import_id], missing, ends[import_id]))
        _handle_ticks_without_runs(without_runs, now)
        _mark_reconciled(ends)


def _counted_by_beat(imp: ScheduledImport) -> Callable[[datetime], bool]:
    """Whether a tick without a run is one beat counted as missed when it came back (its
    catch-up policy ran them once, or not at all): counted again here, `missed_ticks` was
    twice the ticks missed."""
    low, high = imp.missed_counted_from, imp.missed_counted_until
    if low is None or high is None:
        return lambda tick: False
    return lambda tick: low <= tick <= high


def _handle_ticks_without_runs(
    found: list[tuple[ScheduledImport, list[datetime], datetime]], now: datetime
) -> None:
    """For each (import, its ticks without a run, reconciled until) of a batch: count the
    ticks, run the catch-up, and note the import reconciled, all in one transaction: a pass
    cut meanwhile (its time limit) counts nothing twice, and a batch costs a few statements.

    One transaction an import (a lock, a look for newer runs, a count, a note) took 6 to 10 ms
    each: a pass after a two-hour outage took 102 s at 10,000 imports, of its 120 s limit, and
    the next one, every import one tick behind, 72 s, longer than the minute between passes.
    """
    if not found:
        return
    for imp, missing, _until in found:
        logger.warning(
            "ticks without a run import=%s count=%s first=%s last=%s catchup=%s",
            imp.pk, len(missing), missing[0].isoformat(), missing[-1].isoformat(), imp.catchup,
        )  # fmt: skip
    with transaction.atomic():
        ids = sorted(imp.pk for imp, _missing, _until in found)
        # As they are now, locked: one paused, cancelled or rescheduled since the batch was
        # read has no missed tick (its catch-up ran, and its owner heard it was late, after a
        # pause answered 200, or right after a schedule change).
        locked = (
            ScheduledImport.objects.select_for_update()
            .filter(pk__in=ids)
            .order_by("pk")
            .values_list("pk", "status", "schedule_changed_at")
        )
        now_as = {pk: (status, changed_at) for pk, status, changed_at in locked}
        found = [
            item
            for item in found
            if now_as.get(item[0].pk)
            == (ScheduledImport.Status.ACTIVE, item[0].schedule_changed_at)
        ]
        if not found:
            return
        newer = _with_newer_runs({imp.pk: missing[-1] for imp, missing, _until in found})
        runs = [
            ImportRun(
                scheduled_import=imp,
                trigger=ImportRun.Trigger.CATCHUP,
                scheduled_for=missing[-1],
                celery_task_id=str(uuid.uuid4()),
            )
            for imp, missing, _until in found
            if imp.catchup == ScheduledImport.Catchup.COALESCE and imp.pk not in newer
        ]
        if runs:
            ImportRun.objects.bulk_create(runs)
            after_commit.send_after_commit(
                lambda: services.send_runs(runs), f"run messages runs={len(runs)}",
                "reconciliation's next pass sends them", already_said=(services.BrokerUnavailable,),
            )  # fmt: skip
        _count_missed([(imp.pk, len(missing), until) for imp, missing, until in found], now)


def _with_newer_runs(last_missing: dict[int, datetime]) -> set[int]:
    """The imports that have a run of a tick after their last tick without one."""
    ids = list(last_missing)
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT DISTINCT v.id
              FROM unnest(%s::bigint[], %s::timestamptz[]) AS v(id, last_missing)
             WHERE EXISTS (
                   SELECT 1 FROM {ImportRun._meta.db_table} r
                    WHERE r.scheduled_import_id = v.id AND r.scheduled_for > v.last_missing)
            """,
            [ids, [last_missing[pk] for pk in ids]],
        )
        return {row[0] for row in cursor.fetchall()}


def _count_missed(counts: list[tuple[int, int, datetime | None]], now: datetime) -> None:
    """Count each (import, missed ticks, reconciled until or None to keep it) in one
    statement; an import is late from now unless it already was, and its owner hears once a
    late streak, once the caller's transaction commits."""
    if not counts:
        return
    table = ScheduledImport._meta.db_table
    ids = [import_id for import_id, _count, _until in counts]
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            WITH before AS (
                SELECT i.id, i.late_since IS NULL AS was_on_time
                  FROM {table} i WHERE i.id = ANY(%s::bigint[])
            )
            UPDATE {table} AS i
               SET missed_ticks = i.missed_ticks + v.missed,
                   missed_while_late = CASE WHEN i.late_since IS NULL THEN v.missed
                                            ELSE i.missed_while_late + v.missed END,
                   late_since = COALESCE(i.late_since, %s),
                   reconciled_until = COALESCE(v.until, i.reconciled_until)
              FROM unnest(%s::bigint[], %s::int[], %s::timestamptz[]) AS v(id, missed, until),
                   before
             WHERE i.id = v.id AND before.id = v.id
            RETURNING i.id, before.was_on_time
            """,
            [
                ids,
                now,
                ids,
                [count for _import_id, count, _until in counts],
                [until for _import_id, _count, until in counts],
            ],
        )
        newly_late = sorted(pk for pk, was_on_time in cursor.fetchall() if was_on_time)
    if newly_late:
        from . import notifications

        transaction.on_commit(lambda: notifications.on_imports_late(newly_late))


def _mark_reconciled(ends: dict[int, datetime]) -> None:
    table = ScheduledImport._meta.db_table
    ids = list(ends)
    with transaction.atomic(), connection.cursor() as cursor:
        import_locks.lock_in_id_order(ScheduledImport.objects.filter(pk__in=ids))
        cursor.execute(
            f"""
            UPDATE {table} AS i SET reconciled_until = v.until
              FROM unnest(%s::bigint[], %s::timestamptz[]) AS v(id, until)
             WHERE i.id = v.id
            """,
            [ids, [ends[pk] for pk in ids]],
        )
