"""Webhooks out: the signed POST, and the deliveries that make it.

What to send, to whom, when, and how it is signed are schedules' (schedules.alerts,
schedules.notifications); this module is the worker's side of it: the HTTP request, under the
fetcher's private-address rule, and the delivery steps around it. Retrying is the tasks'
(tasks/tasks.py), with the numbers below.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any, NamedTuple
from urllib.parse import urljoin

import requests
from celery.exceptions import SoftTimeLimitExceeded
from celery.utils.time import get_exponential_backoff_interval

from common import database_clock
from schedules import alerts, email_digest, notifications
from schedules.history import hide_url_password
from schedules.models import NotificationDelivery
from schedules.text import quoted

from . import crashes, destinations
from .errors import PermanentImportError, TransientImportError
from .fetch import GuardedAdapter, check_public_address, watched
from .fetch_errors import failure
from .mail_errors import MAIL_ERRORS, mail_failure, mail_server

logger = logging.getLogger("importbeat.alerts")

TIMEOUT = (5.0, 10.0)  # connect, read (seconds)
# The whole POST, answer included: the read timeout bounds one silence, and a receiver that
# dripped a byte every few seconds held a worker slot until the task's time limit killed it,
# its notification left `retrying` with no word and no next try.
TOTAL_SECONDS = 20.0
# A notification's task's own limit (tasks.deliver_notification, send_email_digest).
TIME_LIMIT_SECONDS = 60
OUT_OF_TIME = f"the notification was not sent within its time limit ({TIME_LIMIT_SECONDS} s)"
MAX_RETRIES = 5
BACKOFF_SECONDS = 10
BACKOFF_MAX_SECONDS = 600
USER_AGENT = "importbeat-alerts/1.0"


class Answer(NamedTuple):
    """A receiver's answer, as far as it is read: its status line and where a redirect points.
    Its body is never read (post)."""

    status: int
    location: str = ""


class RetryLater(TransientImportError):
    """A transient failure logged as `retrying`, its next attempt `countdown` seconds away:
    the log keeps when (`next_attempt_at`), so that the sweep sends it again if its message is
    lost (notifications.resend_lost)."""

    def __init__(self, error: TransientImportError, countdown: float) -> None:
        super().__init__(str(error))
        self.error = error
        self.countdown = countdown


class NotificationWaits(TransientImportError):
    """A notification's message that does not send it now (notifications.NotNow): its task
    ends in RETRY with these words, and its message asks again, saying what it saw (`seen`)."""

    def __init__(self, why: str, seen: dict[str, Any] | None = None) -> None:
        super().__init__(why)
        self.seen = seen or {}


def backoff(retries: int, error: TransientImportError) -> float:
    """A notification's next try: capped, jittered exponential backoff (STYLE rule 4); after
    its destination's wait when it waits for one (destinations.Waiting), spread over as long
    again, so that the destination's next try finds the others waiting on, not all at once."""
    countdown = get_exponential_backoff_interval(
        factor=BACKOFF_SECONDS, retries=retries, maximum=BACKOFF_MAX_SECONDS, full_jitter=True
    )
    if isinstance(error, destinations.Waiting):
        countdown = error.seconds + random.uniform(0, max(countdown, error.seconds))
    return countdown


def post_signed(url: str, payload: dict[str, Any], secret: str) -> int:
    """POST `payload` as JSON to `url`, signed (alerts.SIGNATURE_HEADER); the answer's status.

    Raises TransientImportError (no answer: destinations.NoAnswer; 429, 5xx: the task retries
    with backoff) or PermanentImportError (a private address, 4xx, a redirect: retrying would
    fail the same way).
    """
    return judged(*post(url, payload, secret))


def post(url: str, payload: dict[str, Any], secret: str) -> Answer:
    """The signed POST itself: the answer's status, whatever it is, and where it redirects.

    Raises destinations.NoAnswer when there is none (the connection refused, failed or timed
    out), PermanentImportError when it may not or cannot be sent. The private-address rule and
    the pinned connections are the fetcher's; redirects are not followed, so a public URL
    cannot bounce the POST to an internal one.

    The answer's body is never read: only its status line and headers are. Read whole, and
    gunzipped as requests does by default, a receiver's answer of a few KiB inflating to
    gigabytes (or a large plain one) took the worker's memory, and the worker runs every
    user's imports (notifications hunt). So the body is neither asked compressed
    (Accept-Encoding: identity) nor read (stream=True): whatever it holds, even a body that is
    not the gzip it says, the status judges the POST.
    """
    if not url.startswith(("http://", "https://")):
        raise PermanentImportError(f"only http and https callback URLs are allowed: {url}")
    check_public_address(url)
    body = json.dumps(payload).encode()
    headers = {
        "User-Agent": USER_AGENT,
        "Content-Type": "application/json",
        "Accept-Encoding": "identity",
        # Timed by the cluster's clock, not the worker host's: a receiver refuses a `t` more
        # than 5 minutes from its own, and a worker whose clock was 10 minutes off had every
        # webhook it signed refused, failed for good (notifications hunt).
        alerts.SIGNATURE_HEADER: alerts.signature(secret, int(database_clock.timestamp()), body),
    }
    with watched(TOTAL_SECONDS) as watchdog:
        try:
            with _Session() as session:
                # No ~/.netrc nor proxy settings from the worker's environment: a callback URL
                # is any user's choice, and the worker's own logins are nobody's to be sent.
                session.trust_env = False
                # The fetcher's adapter: the socket goes to the address that was checked, so a
                # second DNS answer cannot point the POST at an internal host (DNS rebinding).
                session.mount("http://", GuardedAdapter())
                session.mount("https://", GuardedAdapter())
                response = session.post(
                    url,
                    data=body,
                    timeout=TIMEOUT,
                    allow_redirects=False,
                    headers=headers,
                    stream=True,
                )
                # Closed unread: the connection is dropped with the session, not reused.
                with response:
                    answer = Answer(response.status_code, response.headers.get("Location", ""))
        except requests.RequestException as error:
            if watchdog.reason:
                raise _cut_off(url) from error
            if isinstance(error, requests.ConnectionError | requests.Timeout):
                failed = destinations.no_answer(f"cannot reach {url}", error)
                failed.connected = isinstance(error, requests.ReadTimeout)
                raise failed from error
            raise failure(PermanentImportError, f"cannot post to {url}", error) from error
    if watchdog.reason:
        # Cut off in the middle of its headers, an answer can still look whole to http.client.
        raise _cut_off(url)
    if answer.location:
        answer = answer._replace(location=_where(url, answer.location))
    return answer


class _Session(requests.Session):
    """A session that never looks where a redirect points: requests parsed the Location of an
    answer it does not follow (allow_redirects=False) all the same, and one that is no URL
    (`http://[oops/`) raised from the POST, the delivery an unexpected error (review)."""

    def get_redirect_target(self, resp: requests.Response) -> None:
        return None


def _where(url: str, location: str) -> str:
    """A redirect's Location as a whole URL, its password hidden; as it came when it is none
    (`http://[oops/`: joining it raised, and the delivery ended in an unexpected error, not
    failed as the redirect it was (review))."""
    try:
        return hide_url_password(urljoin(url, location))
    except ValueError:
        return location


def _cut_off(url: str) -> destinations.NoAnswer:
    late = f"no whole answer within {TOTAL_SECONDS:g} s"
    return destinations.NoAnswer(f"cannot reach {url}: {late}", late, connected=True)


def judged(status: int, location: str = "") -> int:
    """An answer's status, or the failure it is: 429 and 5xx transient, 3xx and 4xx not.

    A redirect says where it points and that it is not followed: "the callback answered HTTP
    301" alone left the owner guessing the URL to set (notifications hunt)."""
    if status == 429 or status >= 500:
        raise TransientImportError(f"the callback answered HTTP {status}")
    if 300 <= status < 400 and location:
        raise PermanentImportError(
            f"the callback answered HTTP {status}, redirecting to {quoted(location)}: "
            "redirects are not followed; set the import's callback_url to where it redirects"
        )
    if 300 <= status < 400:
        raise PermanentImportError(
            f"the callback answered HTTP {status}, a redirect (redirects are not followed)"
        )
    if status >= 300:
        raise PermanentImportError(f"the callback answered HTTP {status}")
    return status


def deliver(
    delivery_id: int,
    started: AbstractContextManager[None] | None = None,
    seen: dict[str, Any] | None = None,
) -> str | None:
    """Send one notification and log how it went (schedules.notifications). A transient
    failure is raised as RetryLater for the task to retry, unless it was the last attempt (its
    log counts them). What its log says when it failed for good, else None. `started`: what
    the notification's look-up before it is sent runs in (the task's hand-back when the
    database is away).

    A notification another copy of its message is sending, or whose next attempt is not due
    yet (a copy that came early: notifications.start), is not sent: RetryLater asks again once
    that attempt may have ended, or when the next is due, its log untouched; `seen`: what
    such a message saw when it asked last (its copy ends once another owns the notification)."""
    with started or nullcontext():
        delivery = notifications.start(delivery_id, seen)
    if delivery is None:
        return None
    if isinstance(delivery, notifications.NotNow):
        logger.info("%s; asked again in %.0fs", delivery.why, delivery.seconds)
        raise RetryLater(NotificationWaits(delivery.why, delivery.seen), delivery.seconds)
    # Its log's count (notifications.start): a message that came back (NotNow) counted a retry
    # in Celery that was no attempt.
    final = delivery.attempts > MAX_RETRIES
    # The e-mail and the POST carry the run's texts: a run saved before they were hidden may
    # hold the credential, and an unexpected error may quote them.
    with crashes.secrets_hidden(delivery.scheduled_import):
        _send(delivery, final)
    if delivery.status != NotificationDelivery.Status.FAILED:
        return None
    about = f"{delivery.event}, {delivery.channel}"
    return f"notification {delivery.pk} ({about}) failed: {delivery.error}"


def _send(delivery: NotificationDelivery, final: bool) -> None:
    # The receiver's answer when it gave one, logged whatever it was (a 404 was logged as no
    # answer at all).
    answered: int | None = None
    try:
        with _out_of_time_said():
            if delivery.channel == "email":
                _email(delivery)
                return
            if why := notifications.no_longer_due(delivery):
                notifications.skipped(delivery, why)
                return
            answer = _post_to_an_answering(notifications.webhook(delivery))
            answered = answer.status
            status = judged(*answer)
    except TransientImportError as error:
        if final:
            notifications.failed(delivery, str(error), response_status=answered)
            return
        countdown = backoff(delivery.attempts - 1, error)
        notifications.failed(delivery, str(error), retry_in=countdown, response_status=answered)
        raise RetryLater(error, countdown) from None
    except PermanentImportError as error:
        notifications.failed(delivery, str(error), response_status=answered)
        return
    notifications.delivered(delivery, status)


def _post_to_an_answering(hook: alerts.Webhook) -> Answer:
    """The webhook's POST, unless its destination did not answer another one a moment ago
    (destinations.Waiting); whether it answers is noted for the notifications that follow."""
    host, callback = destinations.of_url(hook.url), destinations.of_callback(hook.url)
    # The callback first: one in its own wait, turned away after taking the host's one try,
    # held that try for two minutes, and every other callback to the host waited (review).
    destinations.admit(callback)
    destinations.admit(host)
    try:
        answer = post(*hook)
    except destinations.NoAnswer as error:
        if error.connected:
            # The host took the connection: it answers, this callback is slow.
            destinations.answered(host)
            destinations.not_answered(callback, error.reason)
        else:
            destinations.not_answered(host, error.reason)
        raise
    destinations.answered(host)
    destinations.answered(callback)
    return answer


def send_digest(owner_id: int, attempt: int | None = None, final: bool | None = None) -> str | None:
    """Send an owner's held e-mails (schedules.email_digest.send_due); the mail server's failure
    told on each notification, and raised as RetryLater for the task to retry, but for the
    e-mails whose log counts their last attempt (MAX_RETRIES retries), which fail for good.
    What the notifications' log says when they all failed for good, else None. `attempt` and
    `final`, when given, say the attempt for all of them (its backoff; the last, or not).

    Counted from each e-mail's own log: the task's message's retries counted a stale copy's
    (from before a database restore, a snapshot's), and its next failure was final for every
    e-mail held, at their first try (endings hunt)."""
    try:
        with _out_of_time_said():
            _to_an_answering_mail_server(email_digest.send_due, owner_id)
    except (TransientImportError, PermanentImportError) as failed:
        if isinstance(failed, TransientImportError) and final is not True:
            last = None if final is False else MAX_RETRIES
            if attempt is None:
                attempt = email_digest.attempt_of(owner_id, last)
            countdown = backoff(attempt - 1, failed)
            if email_digest.failed(owner_id, str(failed), retry_in=countdown, last_attempt=last):
                raise RetryLater(failed, countdown) from None
        else:
            email_digest.failed(owner_id, str(failed))
        return f"the e-mail of user {owner_id}'s held notifications failed: {failed}"
    return None


@contextmanager
def _out_of_time_said() -> Iterator[None]:
    """The task's own time limit as a failure that may pass, said and retried like any other.
    Before, the notification was left as it was, `retrying` for ever with no next try."""
    try:
        yield
    except SoftTimeLimitExceeded:
        raise TransientImportError(OUT_OF_TIME) from None


def _email(delivery: NotificationDelivery) -> None:
    """Send the e-mail (schedules.email_digest); the mail server's failure in words."""
    _to_an_answering_mail_server(email_digest.send, delivery)


def _to_an_answering_mail_server(send: Callable[[Any], None], what: Any) -> None:
    """`send(what)`, unless the mail server did not answer another e-mail a moment ago
    (destinations.Waiting); its failure in words (tasks.mail_errors), and whether it answered
    noted for the e-mails that follow."""
    destination = mail_server()
    destinations.admit(destination)
    try:
        send(what)
    except MAIL_ERRORS as error:
        # Not chained: a server's answer may quote the e-mail, whose texts are hidden
        # (email_digest), but the original error keeps the server's raw bytes as well.
        failed = mail_failure(error)
        if isinstance(failed, destinations.NoAnswer):
            destinations.not_answered(destination, failed.reason)
        else:
            destinations.answered(destination)
        raise failed from None
    destinations.answered(destination)
