"""One e-mail per owner per EMAIL_DIGEST_SECONDS: the notifications between go out together.

An owner whose hundreds of imports read one source got an e-mail per import when that source
went down, and again at every failed tick: the message that mattered was lost among them, and
mail servers throttle such a sender. Now the first e-mail goes out at once; those that come
within the interval after it are `held` in the delivery log, and go out together when it ends,
in one e-mail that lists them (each one's own e-mail when it is alone).

The workers delivering an owner's e-mails meet on its OwnerMailbox row, locked while the e-mail
goes out, so no two send the same notification. The first notification held sends the owner's
message for when the interval ends (`importbeat.send_email_digest`), which sends the digest; if
it is lost, the sweep sends the held ones again (notifications.resend_lost).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from celery import current_app
from django.conf import settings
from django.db import transaction
from django.db.models import F, Max, QuerySet

from common import database_clock

from . import after_commit, services
from .models import NotificationDelivery, OwnerMailbox
from .notifications import ALERT, SENDING_CLAIM_SECONDS, email_of, send_email
from .text import printable

logger = logging.getLogger("importbeat.alerts")

# `retrying`: an e-mail the mail server could not take yet (tasks.mail_errors).
WAITING = (
    NotificationDelivery.Status.PENDING,
    NotificationDelivery.Status.HELD,
    NotificationDelivery.Status.RETRYING,
)
SEND_DIGEST = "importbeat.send_email_digest"
CONSOLE_BACKEND = "django.core.mail.backends.console.EmailBackend"
# Lines a digest lists; the rest are counted (each import's log has them all).
DIGEST_LINES = 100
ERROR_CHARS = 300


def send(delivery: NotificationDelivery) -> None:
    """Send the e-mail notification `delivery` (notifications.start gave it), with every other
    e-mail of its owner still waiting; or hold it until the owner's interval ends."""
    owner = delivery.scheduled_import.owner
    OwnerMailbox.objects.get_or_create(user=owner)
    with transaction.atomic():
        mailbox = OwnerMailbox.objects.select_for_update().get(user=owner)
        if not NotificationDelivery.objects.filter(pk=delivery.pk, status__in=WAITING).exists():
            return  # another worker sent it while this one waited for the lock
        now = database_clock.now()
        opens_at = _opens_at(mailbox.last_sent_at)
        # Held without reading the others: a burst of ten thousand would read them all each.
        if opens_at is not None and now < opens_at:
            _hold(delivery, mailbox, opens_at, now)
        elif not settings.EMAIL_DIGEST_SECONDS:
            # 0 is "each at once" (README): the owner's other e-mails waiting at that moment
            # went along in a digest that said "one e-mail every 0 seconds" (notifications
            # hunt); each goes with its own task.
            _send_now([delivery], mailbox, owner.email, now)
        else:
            waiting = _waiting(owner.pk, delivery)
            # The others it carries are tried too (its own try: notifications.start); if it
            # fails, the whole block is undone, and only `delivery` says so.
            _count_attempt([other for other in waiting if other.pk != delivery.pk])
            _send_now(waiting, mailbox, owner.email, now)


def sends_now(last_sent_at: datetime | None) -> bool:
    """Whether an e-mail of an owner last e-mailed at `last_sent_at` would go out now rather
    than be held (read without the mailbox's lock: send() decides for good)."""
    opens_at = _opens_at(last_sent_at)
    return opens_at is None or database_clock.now() >= opens_at


def send_due(owner_id: int) -> None:
    """Send the owner's held e-mails: the message _hold sent for when their interval ends, or
    the retry of one the mail server did not take (tasks.webhooks.send_digest).

    The owner's, not a held notification's: a notification can go (its import deleted) and
    would take the others' e-mail along until the sweep sent them again.

    A message that comes before their next attempt is due sends nothing and ends (notify
    hunt): a copy of it (a redelivery, Redis reloaded from a snapshot, a database restored
    from a backup) made the e-mail's attempt at once, sooner than its backoff, and one that
    carried another message's retries made it the last. It ends rather than asks again, as a
    notification's copy does (notifications.start): the e-mail's attempts are its message's
    retries here, and each wait would count one. The message due is on its way; if it was
    lost (a restore took back the hour that sent it), the sweep sends each e-mail's own
    message STALE_QUEUED_SECONDS after its next attempt was due (notifications.resend_lost).
    An attempt that fails marks the e-mails it carried as being tried (`sending_since`) before
    it lets the mailbox go: a copy that waited for the lock found them still due, and tried
    them again a moment later.

    Each try counts an attempt of every e-mail it carries that waited for it (`held`, whose
    hold counted none, or `retrying`), whether or not it goes out: the retries
    an e-mail has left are counted from its own log (attempt_of, failed), not from the
    message's retries. A stale message with a high count (from before a database restore, a
    snapshot's) made the mail server's next failure final for every e-mail held, their first
    try logged as their last (endings hunt).
    """
    failure: Exception | None = None
    with transaction.atomic():
        mailbox = (
            OwnerMailbox.objects.select_for_update().select_related("user").filter(user_id=owner_id)
        ).first()
        if mailbox is None:
            return  # the owner is gone, and their notifications with them
        now = database_clock.now()
        opens_at = _opens_at(mailbox.last_sent_at)
        if opens_at is not None and now < opens_at:
            _send_digest_at(mailbox, opens_at, now)  # early: a clock, or a second message
            return
        waiting = _waiting(owner_id)
        if waiting and not any(_due(delivery, now) for delivery in waiting):
            logger.info(
                "notification e-mail owner=%s not sent: its next attempt is not due yet, and "
                "this message came before it (a copy of it, or one from before a database "
                "restore); the message due then sends it", owner_id,
            )  # fmt: skip
            return
        _count_attempt(waiting)
        try:
            with transaction.atomic():
                _send_now(waiting, mailbox, mailbox.user.email, now)
        except Exception as error:
            failure = error
            carried = [d.pk for d in waiting if d.status in (HELD, RETRYING)]
            NotificationDelivery.objects.filter(pk__in=carried).update(sending_since=now)
    if failure is not None:
        raise failure


HELD, RETRYING = NotificationDelivery.Status.HELD, NotificationDelivery.Status.RETRYING
# How early the retry of an owner's e-mail may come and still be the one due: it ends when it
# is not (send_due), so as early as two workers' clocks may disagree before importbeat says so.
# Its countdown is timed by the clock of the worker that failed it and run by another's: each
# may be TOLERANCE_SECONDS off the database's, one behind and one ahead, without a word, and a
# retry 8 s early ended, its e-mails waiting for the sweep, half an hour (review2).
DIGEST_DUE_TOLERANCE_SECONDS = 2 * database_clock.TOLERANCE_SECONDS


def _due(delivery: NotificationDelivery, now: datetime) -> bool:
    """Whether the waiting e-mail `delivery` may be tried now: not one an attempt took a
    moment ago, nor one whose next attempt is still ahead."""
    claim = timedelta(seconds=SENDING_CLAIM_SECONDS)
    if delivery.sending_since is not None and delivery.sending_since > now - claim:
        return False
    due = now + timedelta(seconds=DIGEST_DUE_TOLERANCE_SECONDS)
    return delivery.next_attempt_at is None or delivery.next_attempt_at <= due


def _count_attempt(waiting: list[NotificationDelivery]) -> None:
    """The owner's e-mail is tried: an attempt more for each e-mail in `waiting` it carries
    that waited for it, held (its hold counted none: _hold) or a try failed before (send_due).
    A pending one has its own message on its way, and is counted as it goes (_send_now)."""
    carried = [delivery for delivery in waiting if delivery.status in (HELD, RETRYING)]
    for delivery in carried:
        delivery.attempts += 1
    NotificationDelivery.objects.filter(pk__in=[d.pk for d in carried]).update(
        attempts=F("attempts") + 1
    )


def _carried(owner_id: int) -> QuerySet[NotificationDelivery]:
    """The owner's e-mails that a try of the owner's e-mail carries and tells of: not the
    pending ones, each of which still has its own message on its way, which tries again."""
    return NotificationDelivery.objects.filter(
        scheduled_import__owner_id=owner_id, channel="email", status__in=(HELD, RETRYING)
    )


def attempt_of(owner_id: int, last_attempt: int | None = None) -> int:
    """The attempt that the owner's e-mail just made, as the log of the e-mails it carried
    counts it: the furthest along of those with attempts left (`last_attempt` at most), 1 when
    none has (its backoff: tasks.webhooks.send_digest)."""
    left = _carried(owner_id)
    if last_attempt is not None:
        left = left.filter(attempts__lte=last_attempt)
    return max(left.aggregate(attempts=Max("attempts"))["attempts"] or 1, 1)


def failed(
    owner_id: int, error: str, retry_in: float | None = None, last_attempt: int | None = None
) -> int:
    """The owner's held e-mail did not go out: say why on each notification it carried, which
    wait for the next try in `retry_in` seconds (`retrying`) or failed for good; those whose
    log counts more than `last_attempt` attempts fail for good whatever `retry_in` says. How
    many wait for the next try."""
    if retry_in is not None and last_attempt is not None:
        spent = _carried(owner_id).filter(attempts__gt=last_attempt).values_list("pk", flat=True)
        _failed(_carried(owner_id).filter(pk__in=list(spent)), owner_id, error, None)
    return _failed(_carried(owner_id), owner_id, error, retry_in)


def _failed(
    carried: QuerySet[NotificationDelivery], owner_id: int, error: str, retry_in: float | None
) -> int:
    statuses = NotificationDelivery.Status
    retrying = retry_in is not None
    status = statuses.RETRYING if retrying else statuses.FAILED
    next_attempt_at = database_clock.now() + timedelta(seconds=retry_in) if retrying else None
    # Failed for good: at WARNING, at ERROR when an alert was among them (as each
    # notification's own failure: notifications._save).
    level = logging.INFO
    if not retrying:
        alert = carried.filter(event=ALERT).exists()
        level = logging.ERROR if alert else logging.WARNING
    told = carried.update(
        status=status,
        error=error,
        next_attempt_at=next_attempt_at,
        finished_at=None if retrying else database_clock.now(),
        sending_since=None,  # (the attempt that failed them, send_due, has said how it went)
    )
    if told:
        logger.log(level, "notification e-mail owner=%s %s: %s", owner_id, status, error)
    return told


def _waiting(
    owner_id: int, delivery: NotificationDelivery | None = None
) -> list[NotificationDelivery]:
    """The owner's e-mails waiting to go out, oldest first; `delivery` as the caller has it (its
    attempt counted)."""
    rows = (
        NotificationDelivery.objects.select_related("scheduled_import__owner", "run")
        .filter(scheduled_import__owner_id=owner_id, channel="email", status__in=WAITING)
        .order_by("created_at", "pk")
    )
    waiting = [delivery if delivery and row.pk == delivery.pk else row for row in rows]
    for row in waiting:
        if row.run is not None:
            row.run.scheduled_import = row.scheduled_import  # one query, not one per alert
    return waiting


def _opens_at(last_sent_at: datetime | None) -> datetime | None:
    """When an owner last e-mailed at `last_sent_at` may be e-mailed again; None when now."""
    if last_sent_at is None or not settings.EMAIL_DIGEST_SECONDS:
        return None
    return last_sent_at + timedelta(seconds=settings.EMAIL_DIGEST_SECONDS)


def _hold(
    delivery: NotificationDelivery, mailbox: OwnerMailbox, opens_at: datetime, now: datetime
) -> None:
    """Keep `delivery` for the next e-mail, and make sure a message sends it when it is due."""
    delivery.status = NotificationDelivery.Status.HELD
    # (A mark of the sweep's next pass, from a refused message, is over: it is held now.)
    delivery.next_attempt_at = None
    # Held is no try: notifications.start counted the attempt as it took the notification, and
    # nothing was sent. Counted, a held e-mail said `attempts: 1` with no e-mail tried, and the
    # sweep's resend of one whose owner's message was lost counted a second for its first try
    # (delivered "after 2 attempts", one retry fewer left against a mail server away): the
    # owner's e-mail that carries it counts its try (_count_attempt).
    delivery.attempts -= 1
    delivery.sending_since = None  # (its attempt, notifications.start, ends here)
    delivery.save(update_fields=["status", "attempts", "next_attempt_at", "sending_since"])
    if mailbox.digest_due_at is not None and mailbox.digest_due_at > now:
        return  # the owner's message is on its way for then
    _send_digest_at(mailbox, opens_at, now)


def _send_digest_at(mailbox: OwnerMailbox, opens_at: datetime, now: datetime) -> None:
    """After the commit, the message that sends the owner's held e-mails at `opens_at`."""
    mailbox.digest_due_at = opens_at
    mailbox.save(update_fields=["digest_due_at"])
    countdown = (opens_at - now).total_seconds()

    def send_when_due() -> None:
        current_app.send_task(SEND_DIGEST, args=[mailbox.user_id], countdown=countdown)

    # With the broker down or full the notifications stay held, and the sweep sends them.
    after_commit.send_after_commit(
        send_when_due,
        f"the e-mail digest of owner={mailbox.user_id}",
        "its notifications stay held, and the sweep sends them",
    )


def _send_now(
    waiting: list[NotificationDelivery], mailbox: OwnerMailbox, address: str, now: datetime
) -> None:
    """E-mail the owner the notifications in `waiting` that still have a reason to go out: one
    alone as it is, several in one digest; and log each."""
    emails = {}
    for delivery in waiting:
        if not address:
            delivery.error = "you have no e-mail address (set it with PATCH /api/v1/me)"
        elif (email := email_of(delivery)) is not None:
            # Its import's credential hidden: an old run's texts, saved before the hiding, may
            # hold it, and a server refusing the e-mail may quote it back into the log.
            emails[delivery.pk] = services.without_secrets(delivery.scheduled_import, email)
    sent = [delivery for delivery in waiting if delivery.pk in emails]
    if len(sent) == 1:
        send_email(*emails[sent[0].pk], address)
    elif sent:
        send_email(*digest(sent, [emails[delivery.pk] for delivery in sent]), address)
    nowhere = _no_mail_server()
    for delivery in waiting:
        delivery.finished_at, delivery.next_attempt_at, delivery.sending_since = now, None, None
        if delivery.pk in emails:
            delivery.target, delivery.error = address, nowhere
            delivery.status = "failed" if nowhere else "delivered"
            # It went out in this e-mail: one folded into the caller's was logged delivered
            # after 0 attempts, its webhook sibling after 1 (the caller's own is counted).
            delivery.attempts = max(delivery.attempts, 1)
        else:
            delivery.status = "skipped"  # `error` says why (no address, on time again)
    logged = ["status", "target", "finished_at", "next_attempt_at", "sending_since", "error"]
    NotificationDelivery.objects.bulk_update(waiting, [*logged, "attempts"])
    if sent:
        mailbox.last_sent_at = now
    mailbox.digest_due_at = None
    mailbox.save(update_fields=["last_sent_at", "digest_due_at"])
    logger.info("notification e-mail owner=%s delivered=%s skipped=%s",
                mailbox.user_id, len(sent), len(waiting) - len(sent))  # fmt: skip


def _no_mail_server() -> str:
    """Why an e-mail that went out reached no one ('' when it may have).

    Django's console backend, the default without EMAIL_URL, writes e-mails to the worker's
    output: what development wants (DEBUG), and in production an alert that nobody receives,
    which the log called `delivered`.
    """
    if settings.EMAIL_BACKEND == CONSOLE_BACKEND and not settings.DEBUG:
        return (
            "no mail server is configured (the operator sets EMAIL_URL): the e-mail was only "
            "written to the worker's log"
        )
    return ""


def digest(sent: list[NotificationDelivery], emails: list[tuple[str, str]]) -> tuple[str, str]:
    """One e-mail listing several notifications: (subject, message)."""
    imports = {delivery.scheduled_import_id for delivery in sent}
    subject = f"[importbeat] {len(sent)} notifications about {len(imports)} import(s)"
    lines = [
        _line(delivery, its_subject)
        for delivery, (its_subject, _) in zip(sent, emails, strict=True)
    ]
    if len(lines) > DIGEST_LINES:
        rest = len(lines) - DIGEST_LINES
        lines = [*lines[:DIGEST_LINES], f"... and {rest} more: each import's notifications are"
                 " in its delivery log (GET /api/v1/imports/{id}/deliveries/)."]  # fmt: skip
    every = settings.EMAIL_DIGEST_SECONDS
    message = (
        f"{len(sent)} notifications since importbeat last e-mailed you (it sends one e-mail "
        f"every {every} seconds at most, listing what came in between):\n\n"
        + "\n".join(lines)
        + "\n"
    )
    return subject, message


def _line(delivery: NotificationDelivery, subject: str) -> str:
    """A notification in a digest: its own e-mail's subject, and its run's outcome."""
    imp = delivery.scheduled_import
    line = f"- {printable(subject.removeprefix('[importbeat] '))} (import {imp.pk})"
    if (run := delivery.run) is not None:
        error = " ".join(run.error_message.split())[:ERROR_CHARS]
        line += f": run {run.pk} {run.status}" + (f": {error}" if error else "")
    # Each import's own credential hidden, as its own e-mail's crash would be (tasks.crashes).
    return services.without_secrets(imp, line)
