"""A webhook is signed by the cluster's clock, not the worker host's (regression,
notifications hunt).

The README tells receivers to refuse a signature whose `t` is more than 5 minutes from their
clock. tasks/webhooks.py `post` signed with `int(time.time())`, the worker host's own clock,
where everything else compared across hosts reads common.database_clock: a worker whose clock
was 10 minutes off signed every webhook with a `t` the recipe refuses, the receiver answered 4xx
and the notification was `failed` for good whenever it landed on that worker."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from common import database_clock
from tasks import webhooks
from tests.webhook_support import Hook, failed_run_notified

pytestmark = pytest.mark.django_db

TEN_MINUTES = 600.0


def readme_verify(secret: str, header: str, body: bytes, now: float) -> bool:
    """The README's recipe (API › Webhooks are signed), with the receiver's clock `now`."""
    parts = dict(item.split("=", 1) for item in header.split(","))
    mac = hmac.new(secret.encode(), f"{parts['t']}.".encode() + body, hashlib.sha256)
    fresh = abs(now - int(parts["t"])) <= 300
    return fresh and hmac.compare_digest(mac.hexdigest(), parts["v1"])


def test_a_worker_whose_clock_is_off_signs_with_the_clusters_time(alice, monkeypatch):
    hook = Hook()
    try:
        # Given a worker host whose clock is 10 minutes behind the database's (and the world's:
        # the receiver's clock is right)
        monkeypatch.setattr(database_clock, "offset", lambda strict=False: TEN_MINUTES)
        delivery = failed_run_notified(alice, hook.url)

        # When that worker posts the notification
        webhooks.deliver(delivery.pk)
        receivers_now = database_clock.timestamp()
    finally:
        hook.close()

    # Then the receiver, following the README, can verify it
    ((headers, body),) = hook.requests
    header = headers["Importbeat-Signature"]
    signed_at = int(dict(p.split("=", 1) for p in header.split(","))["t"])
    secret = delivery.scheduled_import.webhook_secret
    assert readme_verify(secret, header, body, receivers_now), (
        f"signed at t={signed_at}, {receivers_now - signed_at:.0f} s behind the cluster's clock:"
        " the README's recipe refuses it"
    )
