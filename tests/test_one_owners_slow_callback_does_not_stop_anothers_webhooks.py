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


def slow_first(n: int) -> None:
    """Alice's path answers in 3 s, past the shortened 1 s read timeout; then every POST at once."""
    if n == 1:
        time.sleep(3)


def alice_then_bob(alice, bob, receiver: Hook, before=lambda: None, then=lambda: None):
    """Alice's notification to her path on the shared receiver, which waits for its next try
    (RetryLater), then bob's to his path on it; `before` the two, `then` after. Bob's, read
    again."""
    forget_redis_keys("importbeat:destination:*")
    try:
        alices = notified(alice, receiver.url)
        bobs = notified(bob, receiver.url.replace("/alice", "/bob"))
        before()
        with pytest.raises(webhooks.RetryLater):
            webhooks.deliver(alices.pk)
        with contextlib.suppress(webhooks.RetryLater):
            webhooks.deliver(bobs.pk)
        then()
    finally:
        receiver.close()
        forget_redis_keys("importbeat:destination:*")
    bobs.refresh_from_db()
    return bobs


def test_a_slow_callback_of_one_owner_does_not_stop_another_owners_webhook(alice, bob, monkeypatch):
    # Given a read timeout of 1 s (10 s in production), when alice's notification times out on
    # her slow path, bob's goes next to the same service, and then another of alice's
    monkeypatch.setattr(webhooks, "TIMEOUT", (5.0, 1.0))
    receiver = Hook(path="/alice", on_post=slow_first)
    again: list[NotificationDelivery] = []

    def another_of_alices() -> None:
        again.append(notified(alice, receiver.url, "prices"))
        with contextlib.suppress(webhooks.RetryLater):
            webhooks.deliver(again[0].pk)

    bobs = alice_then_bob(alice, bob, receiver, then=another_of_alices)

    # Then bob's is posted and delivered, and alice's next one waits for her callback
    assert (bobs.status, bobs.error) == ("delivered", ""), bobs.error
    again[0].refresh_from_db()
    assert again[0].status == "retrying", (again[0].status, again[0].error)
    said = again[0].error
    assert "(callback " in said and "did not answer another notification" in said, said
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
    receiver = Hook(path="/alice", on_post=slow_first)

    bobs = alice_then_bob(
        alice, bob, receiver, before=lambda: host_refused_a_moment_ago(receiver.url)
    )

    assert (bobs.status, bobs.error) == ("delivered", ""), bobs.error


def test_a_waiting_callback_does_not_take_the_hosts_try(alice, bob):
    # Regression (review): a callback in its own wait was turned away after taking the host's
    # one try, held two minutes
    receiver = Hook(path="/alice")

    def alices_waits_and_the_hosts_wait_is_over() -> None:
        destinations.not_answered(destinations.of_callback(receiver.url), "read timed out")
        host_refused_a_moment_ago(receiver.url)

    bobs = alice_then_bob(alice, bob, receiver, before=alices_waits_and_the_hosts_wait_is_over)

    assert (bobs.status, bobs.error) == ("delivered", ""), bobs.error
