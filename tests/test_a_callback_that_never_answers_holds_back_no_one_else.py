"""A callback, or a mail server, that does not answer costs the workers one try per wait, not
one per notification.

Before, every notification to a receiver that hung took a worker slot for the whole read
timeout (10 s), each of its six attempts: a user whose two dozen imports failed, with their
callback down, held both slots of a worker for two minutes, and every other user's run waited
behind them in the queue. Now the first notification that gets no answer marks its receiver
as not answering; the others to it wait without connecting (their log says why) until one
of them, alone, tries again. The mail server likewise: e-mails of every owner wait on it.
"""

from __future__ import annotations

import contextlib
import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis
from celery.exceptions import SoftTimeLimitExceeded
from django.utils import timezone
from redis.backoff import NoBackoff
from redis.retry import Retry

from project.devservices import free_port
from schedules import services
from schedules.models import ImportRun, NotificationDelivery
from tasks import destinations, webhooks
from tasks.errors import TransientImportError
from tasks.mail_errors import mail_server
from tests.api_support import SOURCE, fail_run, make_run
from tests.conftest import wait_for
from tests.factories import make_import
from tests.smtp_support import smtp_server
from tests.webhook_support import Dripping, Hook, Silent, forget_redis_keys, when_due

NOTIFICATIONS = 24


@pytest.fixture(autouse=True)
def _no_destination_waits():
    """What these tests note of destinations goes with them (the suite's Redis is shared by a
    runner's tests)."""
    yield
    forget_redis_keys("importbeat:destination:*")


@pytest.fixture
def silent():
    receiver = Silent()
    yield receiver
    receiver.close()


@pytest.mark.processes
@pytest.mark.django_db(transaction=True)
def test_a_callback_that_never_answers_holds_back_no_one_elses_run(
    alice, bob, csv_server, silent, processes
):
    # Given a worker, and bob's imports whose callback takes the POST and never answers
    # When they all fail, and then alice runs her import
    # Then her run is not held back by two dozen ten-second waits for bob's receiver
    waited = alices_run_after_bobs_notifications(
        alice, bob, silent.url, NOTIFICATIONS, csv_server, processes
    )
    print(f"alice's run waited {waited:.1f} s behind {NOTIFICATIONS} notifications")

    # and bob's notifications waited without connecting, each saying why
    waiting = NotificationDelivery.objects.filter(status="retrying")
    wait_for(lambda: waiting.count() == NOTIFICATIONS, 60, what=processes.logs())
    assert silent.connections <= 2, "a try, and one after its wait, not one per notification"
    errors = set(waiting.values_list("error", flat=True))
    host = silent.url.split("/")[2]
    said = f"cannot reach {silent.url}: the server stopped answering (read timed out)"
    # (those that waited for the receiver may be waiting on since, and say so now)
    assert errors - {said} and all(waited_on(host).fullmatch(e) for e in errors - {said}), errors


def alices_run_after_bobs_notifications(
    alice, bob, callback_url: str, count: int, csv_server, processes
) -> float:
    """A worker started; `count` of bob's imports, notifying `callback_url`, failed; then a run
    of alice's queued. The seconds her run waited until it succeeded."""
    hooked = [
        make_import(bob, SOURCE, name=f"feed-{n}", dataset=f"feed-{n}", notify_on=["failed"],
                    notify_channels=["webhook"], callback_url=callback_url)
        for n in range(count)
    ]  # fmt: skip
    processes.start("worker")
    for imp in hooked:
        fail_run(imp)
    imp = make_import(alice, csv_server.serve("/p.csv", "sku,name\n1,a\n"))
    run = services.enqueue_run(imp, user=alice)
    queued = time.monotonic()
    finished = ImportRun.objects.filter(pk=run.pk, finished_at__isnull=False)
    wait_for(finished.exists, 60, what="alice's run\n" + processes.logs())
    waited = time.monotonic() - queued
    assert ImportRun.objects.get(pk=run.pk).status == "succeeded"
    return waited


def waited_on(host: str) -> re.Pattern[str]:
    """The words of a notification that waits for its receiver, timed out before: its callback
    URL waits (the server took the connection), named by its host and a digest of the URL."""
    return re.compile(
        rf"not sent: {re.escape(host)} \(callback [0-9a-f]{{8}}\) did not answer another "
        r"notification at "
        r"\d\d:\d\d:\d\d UTC: the server stopped answering \(read timed out\)"
    )


def notification(owner, url: str, name: str = "feed") -> NotificationDelivery:
    imp = make_import(owner, SOURCE, name=name, dataset=name, notify_on=["failed"],
                      notify_channels=["webhook"], callback_url=url)  # fmt: skip
    fail_run(imp)
    return NotificationDelivery.objects.get(scheduled_import=imp)


def deliver(delivery: NotificationDelivery, clock: Any = None) -> NotificationDelivery:
    """One attempt, as the task makes it when it is due (its retry waits its countdown:
    webhook_support.when_due, `clock` moved on to it if given); the delivery as its log then
    says."""
    when_due(delivery.pk, clock)
    with contextlib.suppress(TransientImportError):
        webhooks.deliver(delivery.pk)
    return NotificationDelivery.objects.get(pk=delivery.pk)


@pytest.fixture
def clock(time_machine):
    """The clock, running from now, that a test moves on."""
    time_machine.move_to(datetime.now(UTC), tick=True)
    return time_machine


@pytest.fixture
def quick_timeout(monkeypatch, settings):
    settings.ALLOWED_PRIVATE_HOSTS = ["127.0.0.1:*"]
    monkeypatch.setattr(webhooks, "TIMEOUT", (1.0, 0.5))


@pytest.mark.django_db
@pytest.mark.usefixtures("quick_timeout")
def test_notifications_to_a_receiver_that_did_not_answer_wait_without_connecting(
    bob, silent, clock
):
    first, second, third = (notification(bob, silent.url, f"feed-{n}") for n in range(3))

    first = deliver(first)
    assert (first.status, silent.connections) == ("retrying", 1)
    assert (
        first.error == f"cannot reach {silent.url}: the server stopped answering (read timed out)"
    )

    host = silent.url.split("/")[2]
    for delivery in (second, third):
        delivery = deliver(delivery)
        assert (delivery.status, delivery.attempts) == ("retrying", 1)
        assert waited_on(host).fullmatch(delivery.error), delivery.error
    assert silent.connections == 1

    # Once the wait is over, one tries again; it gets no answer either, and the wait doubles
    clock.shift(destinations.FIRST_WAIT_SECONDS + 1)
    second = deliver(second, clock)
    assert (second.error.startswith("cannot reach"), silent.connections) == (True, 2)
    clock.shift(destinations.FIRST_WAIT_SECONDS + 1)
    assert deliver(third, clock).error.startswith("not sent:")
    clock.shift(destinations.FIRST_WAIT_SECONDS)
    assert deliver(third, clock).error.startswith("cannot reach")
    assert silent.connections == 3


@pytest.mark.django_db
@pytest.mark.usefixtures("quick_timeout")
def test_a_receiver_that_answers_again_takes_every_notification_at_once(bob, clock):
    hook = Hook()
    try:
        waiting, later = (
            notification(bob, hook.url, "feed-1"),
            notification(bob, hook.url, "feed-2"),
        )
        destination = destinations.of_url(hook.url)
        destinations.not_answered(destination, "connection refused")
        assert deliver(waiting).status == "retrying"
        assert hook.requests == []

        clock.shift(destinations.FIRST_WAIT_SECONDS + 1)
        assert deliver(waiting, clock).status == "delivered"
        assert deliver(later).status == "delivered"
        assert len(hook.requests) == 2
    finally:
        hook.close()


@pytest.mark.django_db
def test_while_one_tries_after_the_wait_the_others_wait_on(clock):
    destinations.not_answered("hooks.example.com:443", "timed out")
    clock.shift(destinations.FIRST_WAIT_SECONDS + 1)
    destinations.admit("hooks.example.com:443")  # the try
    with pytest.raises(destinations.Waiting, match="did not answer another notification"):
        destinations.admit("hooks.example.com:443")
    destinations.admit("other.example.com:443")


@pytest.mark.django_db
@pytest.mark.usefixtures("quick_timeout")
def test_without_redis_every_notification_tries(bob, silent, monkeypatch):
    # (no retries: redis-py's own would only make the test slower; Redis is the broker too, so
    # a worker without it takes no notification anyway)
    nowhere = redis.Redis(port=free_port(), socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0))
    monkeypatch.setattr(destinations, "client", lambda: nowhere)
    destinations._scripts.cache_clear()
    try:
        first, second = (
            notification(bob, silent.url, "feed-1"),
            notification(bob, silent.url, "feed-2"),
        )
        assert deliver(first).error.startswith("cannot reach")
        assert deliver(second).error.startswith("cannot reach")
        assert silent.connections == 2
    finally:
        destinations._scripts.cache_clear()


def email(owner, status: str = "pending") -> NotificationDelivery:
    imp = make_import(owner, SOURCE, notify_on=["failed"], notify_channels=["email"])
    run = make_run(imp, "failed", error_message="HTTP 503")
    return NotificationDelivery.objects.create(
        scheduled_import=imp, run=run, event="failed", channel="email", status=status
    )


def use_mail_server(settings, port: int) -> None:
    """The settings EMAIL_URL smtp://127.0.0.1:port gives, as a worker started with it has."""
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", port


@pytest.mark.django_db
def test_emails_wait_while_the_mail_server_does_not_answer(alice, bob, settings, clock):
    # Given no mail server where EMAIL_URL points
    port = free_port()
    use_mail_server(settings, port)
    alices, bobs = email(alice), email(bob)

    # When alice's e-mail finds no server, then bob's waits without trying, saying why
    assert (
        deliver(alices).error
        == f"cannot reach the mail server 127.0.0.1:{port} (Connection refused)"
    )
    bobs = deliver(bobs)
    assert bobs.status == "retrying"
    assert re.fullmatch(
        rf"not sent: the mail server 127.0.0.1:{port} did not answer another notification at "
        r"\d\d:\d\d:\d\d UTC: Connection refused",
        bobs.error,
    ), bobs.error

    # When the server answers again after the wait, then the next e-mail goes, and the rest at once
    with smtp_server(port=port) as (_url, mailbox):
        clock.shift(destinations.FIRST_WAIT_SECONDS + 1)
        assert deliver(bobs, clock).status == "delivered"
        assert deliver(alices, clock).status == "delivered"
        assert len(mailbox.received()) == 2


@pytest.mark.django_db
def test_an_owners_held_emails_wait_while_the_mail_server_does_not_answer(alice, settings):
    use_mail_server(settings, free_port())
    held = email(alice, status="held")
    destinations.not_answered(mail_server(), "Connection refused")

    with pytest.raises(webhooks.RetryLater) as raised:
        webhooks.send_digest(alice.pk, final=False)
    # retried after the mail server's wait, when its log says
    assert isinstance(raised.value.error, destinations.Waiting)
    assert raised.value.countdown >= raised.value.error.seconds
    held.refresh_from_db()
    assert held.status == "retrying"
    assert held.next_attempt_at >= timezone.now() + timedelta(seconds=raised.value.countdown - 5)
    assert held.error.startswith(f"not sent: {mail_server()} did not answer another notification")


@pytest.mark.django_db
@pytest.mark.usefixtures("quick_timeout")
def test_a_receiver_that_drips_its_answer_is_cut_off_at_the_deadline(bob, monkeypatch):
    # Given a callback that answers a byte at a time, never a whole answer, and never silent
    # for as long as the read timeout
    monkeypatch.setattr(webhooks, "TIMEOUT", (1.0, 1.0))
    monkeypatch.setattr(webhooks, "TOTAL_SECONDS", 2.0)
    dripping = Dripping(every=0.2)
    try:
        first, second = (notification(bob, dripping.url, f"feed-{n}") for n in range(2))

        # When a notification goes to it, then it is cut off at the deadline and retried
        started = time.monotonic()
        first = deliver(first)
        assert time.monotonic() - started < 5
        assert (first.status, first.error) == (
            "retrying",
            f"cannot reach {dripping.url}: no whole answer within 2 s",
        )
        # and the others to it wait, as for a receiver that does not answer at all
        assert deliver(second).error.endswith("UTC: no whole answer within 2 s")
        assert dripping.connections == 1
    finally:
        dripping.close()


@pytest.mark.django_db
def test_a_notification_out_of_time_says_so_and_is_tried_again(bob, monkeypatch):
    # Given a notification whose sending outlasts its task's time limit
    def out_of_time(*args):
        raise SoftTimeLimitExceeded()

    monkeypatch.setattr(webhooks, "post", out_of_time)
    delivery = notification(bob, "https://hooks.example.com/in")

    # Then its log says so, and it is tried again; at its last attempt it failed for good
    delivery = deliver(delivery)
    assert (delivery.status, delivery.error) == ("retrying", webhooks.OUT_OF_TIME)
    # (its log counts its attempts: the sixth is its last, when it is due)
    NotificationDelivery.objects.filter(pk=delivery.pk).update(attempts=webhooks.MAX_RETRIES)
    when_due(delivery.pk)
    assert webhooks.deliver(delivery.pk) == (
        f"notification {delivery.pk} (failed, webhook) failed: {webhooks.OUT_OF_TIME}"
    )
