"""One owner's slow callback does not stop another owner's webhooks to the same host.

Regression (notifications hunt): bob's callback https://hooks.example.com/bob answers at once;
alice's https://hooks.example.com/alice, on the same receiver service, answers past the read
timeout. "Not answering" was noted for the host and port, a read timeout counted as no answer:
bob's notifications were not even tried ("not sent: hooks.example.com:443 did not answer
another notification"), each wait one of his attempts, until they failed without a POST. A
server that took the connection and did not answer in time makes that callback URL wait now
(tasks.destinations.of_callback); a host that takes no connection still makes every callback
to it wait.
"""

from __future__ import annotations

import contextlib
import time

import pytest

from common.redis_client import client
from schedules.models import NotificationDelivery
from tasks import destinations, webhooks
from tests.factories import make_import
from tests.webhook_support import SOURCE, Hook, finished_run, forget_redis_keys

pytestmark = pytest.mark.django_db


def notified(owner, url: str, name: str = "products") -> NotificationDelivery:
    imp = make_import(owner, SOURCE, name=name, dataset=name, notify_on=["failed"],
                      notify_channels=["webhook"], callback_url=url,
                      alert_after_failures=0)  # fmt: skip
    run = finished_run(imp, "failed", error="boom")
    return NotificationDelivery.objects.get(run=run, channel="webhook", event="failed")


def test_a_slow_callback_of_one_owner_does_not_stop_another_owners_webhook(alice, bob, monkeypatch):
    # The read timeout shortened to 1 s (10 s in production): alice's path answers in 3 s
    monkeypatch.setattr(webhooks, "TIMEOUT", (5.0, 1.0))
    forget_redis_keys("importbeat:destination:*")
    receiver = Hook(path="/alice", on_post=lambda n: time.sleep(3) if n == 1 else None)
    try:
        alices = notified(alice, receiver.url)
        bobs = notified(bob, receiver.url.replace("/alice", "/bob"))

        # When alice's notification times out on her slow path
        with pytest.raises(webhooks.RetryLater):
            webhooks.deliver(alices.pk, final=False)
        # ... and bob's, to the same service, goes next, and then another of alice's
        with contextlib.suppress(webhooks.RetryLater):
            webhooks.deliver(bobs.pk, final=False)
        again = notified(alice, receiver.url, "prices")
        with contextlib.suppress(webhooks.RetryLater):
            webhooks.deliver(again.pk, final=False)
    finally:
        receiver.close()
        forget_redis_keys("importbeat:destination:*")

    # Then bob's is posted and delivered, and alice's next one waits for her callback
    bobs.refresh_from_db()
    assert (bobs.status, bobs.error) == ("delivered", ""), bobs.error
    again.refresh_from_db()
    assert again.status == "retrying", (again.status, again.error)
    assert "(callback " in again.error and "did not answer another notification" in again.error
    assert len(receiver.requests) == 2


def host_refused_a_moment_ago(url: str) -> None:
    """The host refused a connection; its wait is over now."""
    host = destinations.of_url(url)
    destinations.not_answered(host, "connection refused")
    client().hset(f"importbeat:destination:{host}", "until", time.time() - 1)


def test_a_slow_callbacks_try_does_not_keep_the_host_waiting(alice, bob, monkeypatch):
    # Regression (review): after the host's wait, alice's slow path took the host's one try and
    # kept it two minutes, its "connection refused" never cleared: bob's webhooks waited
    monkeypatch.setattr(webhooks, "TIMEOUT", (5.0, 1.0))
    forget_redis_keys("importbeat:destination:*")
    receiver = Hook(path="/alice", on_post=lambda n: time.sleep(3) if n == 1 else None)
    try:
        alices = notified(alice, receiver.url)
        bobs = notified(bob, receiver.url.replace("/alice", "/bob"))
        host_refused_a_moment_ago(receiver.url)

        # Alice's slow path takes the host's try after its wait, and times out reading
        with pytest.raises(webhooks.RetryLater):
            webhooks.deliver(alices.pk, final=False)
        # ... then bob's goes to the same service, which answers
        with contextlib.suppress(webhooks.RetryLater):
            webhooks.deliver(bobs.pk, final=False)
    finally:
        receiver.close()
        forget_redis_keys("importbeat:destination:*")

    bobs.refresh_from_db()
    assert (bobs.status, bobs.error) == ("delivered", ""), bobs.error


def test_a_waiting_callback_does_not_take_the_hosts_try(alice, bob, monkeypatch):
    # Regression (review): a callback in its own wait was turned away after taking the host's
    # one try, held two minutes
    forget_redis_keys("importbeat:destination:*")
    receiver = Hook(path="/alice")
    try:
        alices = notified(alice, receiver.url)
        bobs = notified(bob, receiver.url.replace("/alice", "/bob"))
        # Alice's callback timed out a moment ago (it waits), and the host's wait is over
        destinations.not_answered(destinations.of_callback(receiver.url), "read timed out")
        host_refused_a_moment_ago(receiver.url)

        with pytest.raises(webhooks.RetryLater):
            webhooks.deliver(alices.pk, final=False)
        with contextlib.suppress(webhooks.RetryLater):
            webhooks.deliver(bobs.pk, final=False)
    finally:
        receiver.close()
        forget_redis_keys("importbeat:destination:*")

    bobs.refresh_from_db()
    assert (bobs.status, bobs.error) == ("delivered", ""), bobs.error
