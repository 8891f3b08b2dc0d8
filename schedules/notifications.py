"""Notifications the user configures: which events of an import notify, on which channels.

Events: a run `failed` (or timed out), was `partial`, `succeeded` ("data landed"), the first
good run after failures (`recovered`), and the import turning `late`. Channels: `email` (the
owner's address, `PATCH /me`) and `webhook` (the import's `callback_url`, signed with its
`webhook_secret`: alerts.signature). Each notification is a NotificationDelivery row, created
in the transaction that finished the run and delivered by the `importbeat.deliver_notification`
task after the commit, webhooks retried with backoff; the row is the delivery log. E-mails
go out through schedules.email_digest: one per owner per EMAIL_DIGEST_SECONDS at most.

What notifies, the payloads, the e-mail and the log's entries are decided here; the worker's
delivery (tasks.webhooks.deliver) calls these steps around its POST. The task is sent by name:
schedules never imports tasks (STYLE rule 15).

The failure-streak alert (alerts.py, `alert_after_failures`) is delivered and logged the same
way, as the event `alert`: to the owner's e-mail and the callback URL whatever the import's
notification settings, with its own e-mail and its `import.failing` payload.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from celery import current_app
from django.conf import settings
from django.core.mail import send_mail
from django.db import connection, transaction
from django.db.models import Count, Exists, OuterRef, Q, QuerySet
from redis.exceptions import RedisError

from common import database_clock, error_words
from common.redis_client import client

from . import after_commit, alerts, credentials, import_locks
from .fresh_connection import on_a_fresh_connection
from .models import ImportRun, NotificationDelivery, OwnerMailbox, ScheduledImport
from .text import printable
from .validation import NOTIFY_CHANNELS

logger = logging.getLogger("importbeat.alerts")

DELIVER = "importbeat.deliver_notification"
# The sweep sends this many lost notifications at most, and looks at RESEND_LOOKS at most to
# find them among those waiting in a line.
RESEND_BATCH = 500
# Late imports told in one transaction (on_imports_late).
LATE_BATCH = 500
RESEND_LOOKS = 20_000
# How far back the newest outcomes are read (recent_outcomes): the newest deliveries by id, a
# range of the primary key, whatever the number kept in the log (no index serves a window of
# `created_at` over all statuses).
RECENT_LOOKS = 10_000
# How an e-mail refused for its address alone begins (tasks.mail_errors): its owner's to mend,
# no sign of a mail server that refuses everything (recent_outcomes).
ADDRESS_REFUSED = "the mail server refused the address"
# How a refusal of importbeat itself begins (tasks.mail_errors): one says the server refuses
# every e-mail, where one e-mail refused otherwise (its content taken for spam) may be its own.
SERVER_REFUSALS = (
    "the mail server refused importbeat's login",
    "the mail server refused the sender",
)
# Where a pass stopped looking ("<created_at ISO> <id>"): the next goes on from there, so that a
# lost notification behind more than RESEND_LOOKS parked ones is found a few passes later (it
# waited until the lines drained). A pass that reaches the end starts the next from the first.
RESEND_CURSOR_KEY = "importbeat:notifications:resend_cursor"
RESEND_CURSOR_SECONDS = 24 * 3600
# The failure-streak alert's event (alerts.py).
ALERT = "alert"
RUN_EVENTS = {
    ImportRun.Status.FAILED: "failed",
    ImportRun.Status.TIMED_OUT: "failed",
    ImportRun.Status.PARTIAL: "partial",
    ImportRun.Status.SUCCEEDED: "succeeded",
}


def on_run_finished(imp: ScheduledImport, run: ImportRun) -> None:
    """Queue the notifications of a finished run; inside finish_run's transaction, with `imp`
    as it was before the run's outcome was counted (its failure streak included)."""
    events = [RUN_EVENTS[run.status]] if run.status in RUN_EVENTS else []
    if run.status in (ImportRun.Status.SUCCEEDED, ImportRun.Status.PARTIAL) and (
        imp.consecutive_failures > 0
    ):
        events.append("recovered")
    _queue(imp, run, events)


def on_late(imp: ScheduledImport, channels: tuple[str, ...] = ()) -> None:
    """The import turned late: by e-mail whatever it asked (SPEC: the owner is alerted once per
    late streak), and on its other channels when its `notify_on` has `late`. `channels`
    narrows them (a message of an older version asking for the e-mail)."""
    _create(_deliveries(imp, None, "late", channels or _late_channels(imp)))


def _late_channels(imp: ScheduledImport) -> tuple[str, ...]:
    asked = set(imp.notify_channels or []) if "late" in (imp.notify_on or []) else set()
    return tuple(sorted({"email"} | asked))


def on_imports_late(import_ids: list[int], *, broker_refused: bool = False) -> None:
    """A late streak began for these imports (a tick was missed): tell each owner once, by
    e-mail and on the import's other channels when it asked for `late`
    (on_late: deliveries in its log).

    Called after the commit that set `late_since`; the streak ends when a tick is dispatched on
    time again (schedules.dispatch), so a schedule that stays broken alerts once, not per tick.
    LATE_BATCH imports a transaction, in a few statements: one import a transaction took 151 s
    of the overdue task's 600 for 10,000 imports late at once (bench_overdue_at_scale).
    `broker_refused`: the caller's message was just refused; the notifications are not asked
    of the broker again, but left to the sweep's next pass (_create).
    """
    ids = sorted(set(import_ids))
    for start in range(0, len(ids), LATE_BATCH):
        batch = ids[start : start + LATE_BATCH]
        with transaction.atomic():
            # Once a streak, whoever asks: beat's message and reconciliation's look for a
            # streak left untold (schedules.reconcile) may both come, the message late behind a
            # busy queue. The imports are locked (in id order, as every caller's) so that the
            # two take turns, and only then is it asked which are untold, in a statement of its
            # own: one that waited for the locks answered from its snapshot of before, and told
            # a streak the other had just told again (review).
            import_locks.lock_in_id_order(ScheduledImport.objects.filter(pk__in=batch))
            untold = (
                ScheduledImport.objects.filter(pk__in=batch)
                .annotate(told=Exists(late_deliveries_of_streak()))
                .filter(told=False)
                .order_by("pk")
            )
            deliveries = []
            for imp in untold:
                logger.error("import late import=%s", imp.pk)
                deliveries += _deliveries(imp, None, "late", _late_channels(imp))
            _create(deliveries, broker_refused=broker_refused)


def late_deliveries_of_streak() -> QuerySet[NotificationDelivery]:
    """The `late` notifications of the outer import's late streak (since its `late_since`;
    none while it is in no streak)."""
    return NotificationDelivery.objects.filter(
        scheduled_import=OuterRef("pk"), event="late", created_at__gte=OuterRef("late_since")
    )


def late_alert_of_import(import_id: int) -> None:
    """on_late's e-mail for the import `import_id`, if it still exists and is late."""
    imp = ScheduledImport.objects.filter(pk=import_id, late_since__isnull=False).first()
    if imp is not None:
        with transaction.atomic():
            on_late(imp, ("email",))


def queue_alert(imp: ScheduledImport, run: ImportRun, channels: tuple[str, ...] = ()) -> None:
    """The failure-streak alert of `run` (alerts.on_run_finished) as deliveries: an e-mail to
    the owner and, when the import has one, a POST to its callback URL (SPEC: an alert goes to
    both, whatever `notify_on` says). `channels` narrows them (a message of an older version
    asking for one)."""
    _create(_deliveries(imp, run, ALERT, channels or ("email", "webhook")))


def queue_alert_of_run(run_id: int, channels: tuple[str, ...]) -> None:
    """queue_alert for the run `run_id`, if it still exists."""
    run = ImportRun.objects.select_related("scheduled_import").filter(pk=run_id).first()
    if run is not None:
        with transaction.atomic():
            queue_alert(run.scheduled_import, run, channels)


def _queue(imp: ScheduledImport, run: ImportRun | None, events: list[str]) -> None:
    wanted = [event for event in events if event in (imp.notify_on or [])]
    channels = tuple(imp.notify_channels or [])
    _create([delivery for event in wanted for delivery in _deliveries(imp, run, event, channels)])


def _deliveries(
    imp: ScheduledImport, run: ImportRun | None, event: str, channels: tuple[str, ...]
) -> list[NotificationDelivery]:
    """One delivery of `event` per channel; a webhook only where the import has a callback."""
    return [
        NotificationDelivery(
            scheduled_import=imp,
            run=run,
            event=event,
            channel=channel,
            target=imp.callback_url if channel == "webhook" else "",
        )
        for channel in channels
        if channel != "webhook" or imp.callback_url
    ]


def _create(deliveries: list[NotificationDelivery], *, broker_refused: bool = False) -> None:
    """Log the deliveries (in the caller's transaction) and send them once it commits.
    `broker_refused`: the caller's own message was just refused; they are not asked of the
    broker again, but marked for the sweep's next pass."""
    if not deliveries:
        return
    NotificationDelivery.objects.bulk_create(deliveries)
    ids = [delivery.pk for delivery in deliveries]
    if broker_refused:
        _send_at_next_sweep(ids)
        return

    sent: list[int] = []

    def send() -> None:
        for delivery_id in ids:
            current_app.send_task(DELIVER, args=[delivery_id], task_id=task_id(delivery_id))
            sent.append(delivery_id)

    # A broker that is down or full must not fail the finished run: the rows stay `pending`,
    # marked for the sweep's next pass (resend_lost), said in one line. Only those not sent:
    # one the broker took before it filled up was sent again a minute later (review).
    after_commit.send_after_commit(
        send,
        f"notifications ids={ids}",
        "the sweep sends them at its next pass",
        refused=lambda: _send_at_next_sweep([pk for pk in ids if pk not in sent]),
    )


def _send_at_next_sweep(ids: list[int]) -> None:
    """Notifications whose message the broker refused: `pending` with `next_attempt_at` set
    (now: the sweep's next pass), which resend_lost takes at once instead of after
    STALE_QUEUED_SECONDS (an alert of a failed run waited 30 minutes after Redis had room
    again). As runs do (services.send_again_at_next_reconcile). Their `created_at` stays what
    it was: the log, retention and health's age of them read it."""
    NotificationDelivery.objects.filter(
        pk__in=ids, status=NotificationDelivery.Status.PENDING
    ).update(next_attempt_at=database_clock.now())


def task_id(delivery_id: int) -> str:
    """The id of a notification's task, the same for every message of it: the first, its
    retries, and those the sweep sends again. Flower lists one task per notification, in the
    state of its last attempt: a task whose retry was lost stayed listed in RETRY for ever
    beside the task the sweep sent again under a new id."""
    return f"importbeat-notification-{delivery_id}"


def resend_lost(
    stale_before: datetime, parked: Callable[[list[int]], set[int]] = lambda ids: set()
) -> int:
    """Send again the notifications whose message may be lost, RESEND_BATCH at most; the
    number sent:
    - `pending` since `stale_before`: their message never reached the broker (it was down when
      their run finished) or was lost with a Redis restart;
    - `pending` with a `next_attempt_at`: the broker refused their message (_send_at_next_sweep),
      taken at this pass whatever their age; the mark is cleared once they are sent;
    - `held` for the owner's next e-mail since EMAIL_DIGEST_SECONDS before `stale_before`, as
      health judges them: that e-mail may be an interval away. Before, with digests longer than
      STALE_QUEUED_SECONDS, every sweep sent each held one again until its digest went, logged
      as lost, an attempt more each time (notifications hunt);
    - `retrying` whose next attempt was due before `stale_before`: the broker refused the retry's
      message as the attempt failed (Celery then drops the task), or lost it with a restart.
      Before, such a notification stayed `retrying` for ever.
    But not those waiting their turn in a line (`parked`, tasks.turns): not lost, only slow.
    Each goes with its attempts so far, so that its count against MAX_RETRIES goes on.
    At least once: if the first message was only slow, a webhook may arrive twice."""
    held_before = stale_before - timedelta(seconds=settings.EMAIL_DIGEST_SECONDS)
    lost = NotificationDelivery.objects.filter(
        Q(status="pending", created_at__lt=stale_before)
        | Q(status="pending", next_attempt_at__isnull=False)
        | Q(status="held", created_at__lt=held_before)
        | Q(status="retrying", next_attempt_at__lt=stale_before)
    ).order_by("created_at", "pk")  # the waiting ones' index order (delivery_waiting_idx)
    sent_ids: list[int] = []
    stopped_at = _resend_cursor()
    try:
        stopped_at = _resend_batches(lost, stopped_at, parked, sent_ids)
    finally:
        # Sent: those the broker had refused are no longer marked for the next pass (the
        # message may wait behind others); a pass that the broker refused midway keeps the rest.
        if sent_ids:
            NotificationDelivery.objects.filter(
                pk__in=sent_ids, status="pending", next_attempt_at__isnull=False
            ).update(next_attempt_at=None)
    _keep_resend_cursor(stopped_at)
    return len(sent_ids)


def _resend_batches(
    lost: QuerySet[NotificationDelivery],
    stopped_at: tuple[datetime, int] | None,
    parked: Callable[[list[int]], set[int]],
    sent_ids: list[int],
) -> tuple[datetime, int] | None:
    """resend_lost's batches, from `stopped_at`: each sent id appended to `sent_ids`; where the
    pass stopped (None: at the end)."""
    sent, looked_at = 0, 0
    while sent < RESEND_BATCH and looked_at < RESEND_LOOKS:
        after = Q()
        if stopped_at is not None:
            at, pk = stopped_at
            after = Q(created_at__gt=at) | Q(created_at=at, pk__gt=pk)
        batch = list(lost.filter(after).values_list("pk", "attempts", "created_at")[:RESEND_BATCH])
        if not batch:
            stopped_at = None
            break
        looked_at += len(batch)
        last_pk, _, last_created_at = batch[-1]
        stopped_at = (last_created_at, last_pk)
        waiting = parked([delivery_id for delivery_id, _, _ in batch])
        for delivery_id, attempts, created_at in batch:
            if delivery_id in waiting:
                continue
            current_app.send_task(
                DELIVER, args=[delivery_id], task_id=task_id(delivery_id), retries=attempts
            )
            sent_ids.append(delivery_id)
            sent += 1
            if sent == RESEND_BATCH:
                stopped_at = (created_at, delivery_id)
                break
    return stopped_at


def _resend_cursor() -> tuple[datetime, int] | None:
    try:
        kept = client().get(RESEND_CURSOR_KEY)
    except RedisError as error:
        logger.warning(
            "the sweep looks from the first waiting notification: %s",
            error_words.redis_for_the_log(error),
        )
        return None
    if not kept:
        return None
    at, _, pk = kept.decode().partition(" ")
    return datetime.fromisoformat(at), int(pk)


def _keep_resend_cursor(stopped_at: tuple[datetime, int] | None) -> None:
    with suppress(RedisError):
        if stopped_at is None:
            client().delete(RESEND_CURSOR_KEY)
        else:
            at, pk = stopped_at
            client().set(RESEND_CURSOR_KEY, f"{at.isoformat()} {pk}", ex=RESEND_CURSOR_SECONDS)


def payload(delivery: NotificationDelivery) -> dict[str, Any]:
    """What a webhook receives: `event` (`run.succeeded`, `import.late`, ...), the import and,
    for a run's event, the run (alerts.run_summary's shape)."""
    imp = delivery.scheduled_import
    if delivery.run is not None:
        body = alerts.run_summary(delivery.run)  # its event: `import.failing`, the alert's
        if delivery.event != ALERT:
            body["event"] = f"run.{delivery.event}"
        return body
    return {
        "event": f"import.{delivery.event}",
        "import": {"id": imp.pk, "name": imp.name, "owner": imp.owner.get_username(),
                   "late_since": imp.late_since.isoformat() if imp.late_since else None},
    }  # fmt: skip


@dataclass(frozen=True)
class NotNow:
    """Why a notification's message does not send it now, and in how many seconds it asks
    again; what it saw (`seen`), which the message asks again with (start)."""

    why: str
    seconds: float
    seen: dict[str, Any] = field(default_factory=dict)


def start(
    delivery_id: int, seen: dict[str, Any] | None = None
) -> NotificationDelivery | NotNow | None:
    """The notification to send now, its attempt counted; NotNow when this message may not send
    it now; None when it is gone or its delivery has ended (delivered, failed or skipped: a
    message sent again by the sweep finds it so).

    Its log counts its attempts, not its message's retries: a message of another notification
    under its id (a database restored from a backup) carried that one's, and bob's e-mail
    failed for good at its first try, logged as its sixth (restore2 hunt). An attempt takes the
    notification (`sending_since`), on either channel; another copy of its message meanwhile
    gets NotNow and asks again once that attempt may have ended. Redis reloaded from an older
    snapshot brings back the message a worker is sending, and the copy posted the notification
    a second time while the first POST went on (snapshot hunt: two POSTs, logged as one
    attempt). An e-mail's owner's mailbox lock then lets one worker at a time send it
    (email_digest.send).

    Not due yet: a message that comes before the notification's `next_attempt_at` (less
    DUE_TOLERANCE_SECONDS) counts no attempt and sends nothing; it asks again when the attempt
    is due (NotNow). Every copy of a `retrying` notification's message (a database restored
    with the notification waiting its backoff while Redis kept older messages of it, a
    redelivery, Redis reloaded from a snapshot, the sweep's resend racing the real retry) was
    one attempt more at once: against a receiver answering 503, four POSTs in 55 ms, and the
    notification spent its MAX_RETRIES in under a second (notify hunt).
    It asks again rather than ending: a message cannot tell whether a due one is still on its
    way. After a restore there is none (the retry the restored row waits for ran the attempt
    the restore took back), and only the broker could say, read whole, every message of a
    notification sharing its task id; ended, the notification would wait for the sweep,
    STALE_QUEUED_SECONDS past its due time. A copy that asks again costs one held message until
    the notification ends: when the attempt is due the first message takes it, and the others
    find it taken or not due again, so the POSTs keep their backoff however many copies there
    are. The sweep's resend of a retry the broker lost is long due, and is taken.

    A copy that asks again says what it saw (`seen`: the notification's attempts then, and
    whether another attempt had it), and ends when another message has owned the notification
    since: an attempt was made after the one it waited for, or the attempt it found sending
    has ended (either way that attempt's own retry, or the sweep, sends the next). Before, a
    copy asked again at every attempt until the notification ended: 34 lines in a worker's log
    and as many RETRY states in Flower for a notification POSTed once a backoff (endings hunt).
    It still takes an attempt whose taker died (its claim stale), and one due that no message
    took (a restore took back the retry that would have).
    """
    delivery = (
        NotificationDelivery.objects.select_related("scheduled_import__owner", "run")
        .filter(pk=delivery_id)
        .first()
    )
    if delivery is None or delivery.status in ENDED:
        return None
    now = database_clock.now()
    with connection.cursor() as cursor:
        cursor.execute(_TAKE, _take_parameters(delivery_id, now, seen))
        taken = cursor.fetchone()
        if taken is None:
            cursor.execute(_WHY_NOT_TAKEN, [delivery_id])
            return _not_now(delivery_id, cursor.fetchone(), now, seen)
    delivery.attempts, delivery.sending_since = taken[0], now
    return delivery


ENDED = ("delivered", "failed", "skipped")
# Longer than a webhook's delivery may last: its task's hard time limit (tasks.tasks
# NOTIFICATION_TASK, 90 s) kills the worker process that took it. An attempt that took it longer
# ago posts no more, and another copy of its message takes it: that worker was lost.
SENDING_CLAIM_SECONDS = 120
# How early a message may come and still be the attempt due at `next_attempt_at`: a retry's
# countdown is timed by the clock of the worker that sent it and run by another's, which may be
# ahead of it by as much (the database's time corrects the reading, not Celery's timer). One
# that comes earlier asks again when the attempt is due (start).
DUE_TOLERANCE_SECONDS = 1.0

_DELIVERIES = NotificationDelivery._meta.db_table
# A conditional UPDATE (STYLE rule 3): one statement takes it, or tells it is taken or not due.
# The times are the database's clock as the worker knows it (database_clock), as
# next_attempt_at's. (`held`: an e-mail waiting for its owner's next one, sent again by the
# sweep, is taken by the message that sends it.)
_TAKE = (
    f"UPDATE {_DELIVERIES} SET sending_since = %(now)s, attempts = attempts + 1"
    " WHERE id = %(id)s AND status IN ('pending', 'held', 'retrying')"
    " AND (sending_since IS NULL OR sending_since <= %(stale)s)"
    " AND (next_attempt_at IS NULL OR next_attempt_at <= %(due)s)"
    # A copy that asked again (start's `seen`): not once another message made an attempt since,
    # nor, when it found one sending, once that attempt ended (its claim gone, not stale).
    " AND attempts <= %(seen_attempts)s AND (sending_since IS NOT NULL OR NOT %(saw_taken)s)"
    " RETURNING attempts"
)
_WHY_NOT_TAKEN = (
    f"SELECT status, sending_since, next_attempt_at, attempts FROM {_DELIVERIES} WHERE id = %s"
)
# (the `seen_attempts` of a message that did not ask again: any count)
_ANY_ATTEMPTS = 2**31 - 1


def _take_parameters(
    delivery_id: int, now: datetime, seen: dict[str, Any] | None = None
) -> dict[str, Any]:
    seen = seen or {}
    return {
        "id": delivery_id,
        "now": now,
        "stale": now - timedelta(seconds=SENDING_CLAIM_SECONDS),
        "due": now + timedelta(seconds=DUE_TOLERANCE_SECONDS),
        "seen_attempts": int(seen.get("attempts", _ANY_ATTEMPTS)),
        "saw_taken": bool(seen.get("taken", False)),
    }


def _not_now(
    delivery_id: int,
    found: tuple[str, datetime | None, datetime | None, int] | None,
    now: datetime,
    seen: dict[str, Any] | None = None,
) -> NotNow | None:
    """Why `found` (status, sending_since, next_attempt_at, attempts) was not taken, and when
    to ask again; None when it has ended meanwhile, or when another message owns it since this
    one, which asked again, saw it (`seen`: start)."""
    if found is None or found[0] in ENDED:
        return None
    _, sending_since, next_attempt_at, attempts = found
    if seen and _owned_since(seen, attempts, sending_since):
        logger.info(
            "notification %s: this copy of its message ends, as another message made its"
            " attempt %s since (that attempt's retry, or the sweep, sends the next)",
            delivery_id, attempts,
        )  # fmt: skip
        return None
    stale = now - timedelta(seconds=SENDING_CLAIM_SECONDS)
    if sending_since is not None and sending_since > stale:
        claim_ends = sending_since + timedelta(seconds=SENDING_CLAIM_SECONDS)
        why = "another delivery of its message is sending it (its message came twice)"
        return NotNow(
            f"notification {delivery_id} waits: {why}",
            max((claim_ends - now).total_seconds(), 1.0),
            {"attempts": attempts, "taken": True},
        )
    if next_attempt_at is not None:
        seconds = max((next_attempt_at - now).total_seconds(), 1.0)
        why = (
            f"its next attempt is due in {seconds:.0f} s, and this message came before it"
            " (a copy of its message, or one from before a database restore)"
        )
        return NotNow(f"notification {delivery_id} waits: {why}", seconds, {"attempts": attempts})
    return None


def _owned_since(seen: dict[str, Any], attempts: int, sending_since: datetime | None) -> bool:
    """Whether a message that asked again, having `seen` the notification, finds it owned by
    another since: an attempt more made, or the attempt it found sending ended (whose retry
    is on its way, or the sweep's resend)."""
    if attempts > int(seen.get("attempts", attempts)):
        return True
    return bool(seen.get("taken")) and sending_since is None


def channel_and_owner(delivery_id: int) -> tuple[str, int, datetime | None] | None:
    """The notification's channel, its import's owner and when the owner was last e-mailed
    (email_digest); None when the notification is gone. One statement, written once: a burst
    of ten thousand e-mails asks it of each."""
    with connection.cursor() as cursor:
        cursor.execute(_CHANNEL_AND_OWNER, [delivery_id])
        return cursor.fetchone()


_CHANNEL_AND_OWNER = (
    f"SELECT d.channel, i.owner_id, m.last_sent_at FROM {NotificationDelivery._meta.db_table} d"
    f" JOIN {ScheduledImport._meta.db_table} i ON i.id = d.scheduled_import_id"
    f" LEFT JOIN {OwnerMailbox._meta.db_table} m ON m.user_id = i.owner_id WHERE d.id = %s"
)


def webhook(delivery: NotificationDelivery) -> alerts.Webhook:
    """A webhook notification's POST: its payload, to its target, signed with the import's
    secret."""
    imp = delivery.scheduled_import
    body = payload(delivery)
    if imp.credential_secret:
        # The run's texts as every other surface shows them, the source's credential hidden
        # (a run saved before the runner hid it, say): the e-mail of the same notification hid
        # it, and the webhook posted it to the callback.
        body = credentials.hide(credentials.secrets_of(imp.credential_secret), body)
    return alerts.Webhook(delivery.target, body, imp.webhook_secret)


def delivered(delivery: NotificationDelivery, response_status: int) -> None:
    """The webhook was answered with a success: log its status."""
    delivery.response_status = response_status
    delivery.status = "delivered"
    _save(delivery)


def skipped(delivery: NotificationDelivery, why: str) -> None:
    """It has no reason to go out any more (no_longer_due): logged as `skipped`, saying why."""
    delivery.error = why
    delivery.status = "skipped"
    delivery.next_attempt_at = None
    _save(delivery)


def failed(
    delivery: NotificationDelivery,
    error: str,
    retry_in: float | None = None,
    response_status: int | None = None,
) -> None:
    """The attempt failed with `error` (plain words): `retrying` when another attempt follows
    in `retry_in` seconds, else `failed` for good. `response_status`: the receiver's answer,
    when it answered (the log said none for a 404)."""
    delivery.error = error
    delivery.response_status = response_status
    delivery.status = "failed" if retry_in is None else "retrying"
    delivery.next_attempt_at = None if retry_in is None else _in(retry_in)
    _save(delivery)


def _in(seconds: float) -> datetime:
    return database_clock.now() + timedelta(seconds=seconds)


def no_longer_due(delivery: NotificationDelivery) -> str:
    """Why a notification waiting to go out has no reason to any more, "" when it has; the
    same for an e-mail and a webhook (a webhook said `import.late` with `late_since: null`
    where the e-mail was skipped).

    - a late import on time again;
    - a run's event whose run was deleted meanwhile (it went out as `import.failed`, or an
      e-mail saying "it missed a tick");
    - a webhook whose import's callback URL was changed or removed since: its retries went on
      posting the run, signed, to the URL the owner had taken away;
    - a run's event, or a late webhook, its import no longer asks for on that channel (an
      e-mail held for the digest went out after the owner turned e-mail, or the event, off);
    - a notification to an owner whose account was deactivated since.
    """
    imp = delivery.scheduled_import
    if not imp.owner.is_active:
        # (on either channel: a deactivated account's webhooks went on, its alerts included)
        return "its owner's account was deactivated before it went out"
    if delivery.event == "late" and imp.late_since is None:
        return "the import ran on time again before it went out"
    if delivery.event != "late" and delivery.run is None:
        return "its run was deleted before it went out"
    if delivery.channel == "webhook" and delivery.target != imp.callback_url:
        now = "removed" if not imp.callback_url else "changed"
        return f"the import's callback URL was {now} before it went out"
    asked = delivery.event == ALERT or (delivery.event == "late" and delivery.channel == "email")
    if not asked:
        # (an alert goes out whatever the import asks, and so does a late e-mail: SPEC)
        if delivery.event not in (imp.notify_on or []):
            return f"the import no longer notifies on {delivery.event}"
        if delivery.channel not in (imp.notify_channels or []):
            return f"the import no longer notifies by {delivery.channel}"
    return ""


def email_of(delivery: NotificationDelivery) -> tuple[str, str] | None:
    """The e-mail of one notification, (subject, message); None when it has no reason to go
    out any more (`delivery.error` says why)."""
    imp = delivery.scheduled_import
    run = delivery.run
    if why := no_longer_due(delivery):
        delivery.error = why
        return None
    if delivery.event == "late":
        return alerts.late_email(imp)
    # Any other event is a run's, whose run is there (no_longer_due).
    if delivery.event == ALERT:
        return alerts.alert_email(run)
    subject = f"[importbeat] {printable(imp.name)}: {delivery.event}"
    # The status in words, and a colon only before an error: "run 4 succeeded: " and "run 2
    # timed_out" were what an owner read (notifications hunt).
    about = f"Run {run.pk} {alerts.status_words(run.status)}"
    about += f": {run.error_message}" if run.error_message else "."
    lines = [f"The import {imp.name!r} (id {imp.pk}): {delivery.event}.", about]
    if run.status in ImportRun.GOOD_STATUSES or run.rows_read:
        lines.append(
            f"Rows: {run.rows_read} read, {run.rows_inserted} inserted, {run.rows_updated} "
            f"updated, {run.rows_unchanged} unchanged, {run.rows_deleted} deleted, "
            f"{run.rows_failed} failed."
        )
    return subject, "\n".join(lines) + "\n"


def send_email(subject: str, message: str, address: str) -> None:
    """Mail `address` from importbeat."""
    send_mail(
        subject=" ".join(subject.split()),
        message=message,
        from_email=settings.DEFAULT_FROM_EMAIL,
        recipient_list=[address],
    )


@dataclass
class Outcomes:
    """How many notifications ended delivered and failed for good, by channel (recent_outcomes),
    and what the newest e-mail that failed says."""

    delivered: dict[str, int] = field(default_factory=lambda: dict.fromkeys(NOTIFY_CHANNELS, 0))
    failed: dict[str, int] = field(default_factory=lambda: dict.fromkeys(NOTIFY_CHANNELS, 0))
    email_failed_words: str = ""


def _save(delivery: NotificationDelivery) -> None:
    """Log the delivery's attempt, tried again on a new connection while the database blinks:
    a webhook answered 200 as the database went away was logged `pending`, its task failed in
    psycopg's words, and the sweep sent it again half an hour later."""
    if delivery.status != "retrying":
        delivery.finished_at = database_clock.now()
        delivery.next_attempt_at = None
    delivery.sending_since = None  # (the attempt that took it has said how it went)
    on_a_fresh_connection(delivery.save, f"notification {delivery.pk} not logged")
    if delivery.status != "failed":
        logger.info("notification %s import=%s event=%s channel=%s attempts=%s",
                    delivery.status, delivery.scheduled_import_id, delivery.event,
                    delivery.channel, delivery.attempts)  # fmt: skip
        return
    # Failed for good: said at WARNING, an alert at ERROR. At INFO (and the task's
    # NotificationFailed is logged at INFO by Celery, an expected failure), a mail server that
    # refused every e-mail, every owner's alert included, left a log shipped from WARNING up
    # without a word (notifications hunt).
    logger.log(
        logging.ERROR if delivery.event == ALERT else logging.WARNING,
        "notification failed import=%s event=%s channel=%s attempts=%s: %s",
        delivery.scheduled_import_id, delivery.event, delivery.channel, delivery.attempts,
        printable(delivery.error),
    )  # fmt: skip


def recent_outcomes(since: datetime) -> Outcomes:
    """The notifications made since `since` that ended, delivered or failed for good (but an
    e-mail refused for its address alone: one owner's typo made the cluster degraded), by
    channel, and the words of the newest e-mail that failed: GET /health and /metrics tell
    the operator of a mail server that refuses everything (notifications hunt; before, only
    the notifications still waiting were counted, and a relay refusing every e-mail for good
    left the cluster `ok`).

    Read among the newest RECENT_LOOKS deliveries, a range of the primary key: index look-ups
    whatever the number kept (a window of `created_at` over all statuses would read the whole
    log). A window holding more counts only those."""
    newest = NotificationDelivery.objects.order_by("-pk").values_list("pk", flat=True)
    bound = newest[RECENT_LOOKS - 1 : RECENT_LOOKS].first() or 0
    ended = NotificationDelivery.objects.filter(
        pk__gte=bound, created_at__gte=since, status__in=("delivered", "failed")
    ).exclude(channel="email", status="failed", error__startswith=ADDRESS_REFUSED)
    outcomes = Outcomes()
    counted = ended.order_by().values_list("channel", "status").annotate(n=Count("id"))
    for channel, status, number in counted:
        (outcomes.delivered if status == "delivered" else outcomes.failed)[channel] = number
    if outcomes.failed["email"]:
        failed = ended.filter(channel="email", status="failed").order_by("-pk")
        outcomes.email_failed_words = failed.values_list("error", flat=True).first() or ""
    return outcomes
