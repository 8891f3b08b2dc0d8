"""A webhook receiver's answer body is never read: only its status judges the POST
(regression, notifications hunt).

A callback's answer was read whole and gunzipped into the worker's memory (tasks/webhooks.py
`post`: requests without `stream=True`, asking for gzip). Any owner chooses their import's
`callback_url`: a receiver that answered `200 OK` with a small gzip body inflating to gigabytes,
or with a large plain body, made the worker that runs every user's imports buffer all of it
(64 KiB of gzip cost 129 MiB), until the kernel's OOM killer took it. And a receiver, or a proxy
before it, that answered 200 with a body that was not the gzip it claimed was logged `failed`
for good, "cannot post to …: … damaged or mislabelled file", though it had the notification."""

from __future__ import annotations

import gzip
import time
import tracemalloc
from collections.abc import Iterator

import pytest

from tasks import webhooks
from tests.webhook_support import Hook, failed_run_notified

pytestmark = pytest.mark.django_db

INFLATED = 64 * 1024 * 1024  # what the answer's body decompresses to: 64 MiB
MOST_MEMORY = 8 * 1024 * 1024  # reading a status line takes far less


def big_answer(gzipped: bool) -> Hook:
    """Answers every POST 200, with a body of INFLATED zero bytes, gzip-encoded or not."""
    raw = bytes(INFLATED)
    if not gzipped:
        return Hook(headers={"Content-Type": "text/plain"}, body=raw)
    body = gzip.compress(raw, compresslevel=9)
    return Hook(headers={"Content-Type": "text/plain", "Content-Encoding": "gzip"}, body=body)


def endless() -> Iterator[bytes]:
    """A body a byte every half second, for 30 s."""
    for _ in range(60):
        yield b"x"
        time.sleep(0.5)


@pytest.mark.parametrize("gzipped", [True, False], ids=["gzip-bomb", "plain-64MiB"])
def test_a_webhook_answered_with_a_huge_body_costs_the_worker_no_memory(alice, gzipped):
    receiver = big_answer(gzipped)
    try:
        # Given an import whose failed runs notify a callback that answers with a huge body
        delivery = failed_run_notified(alice, receiver.url)

        # When the worker delivers it
        tracemalloc.start()
        started = time.monotonic()
        try:
            webhooks.deliver(delivery.pk)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        took = time.monotonic() - started
    finally:
        receiver.close()

    # Then it is delivered (the receiver said 200) without buffering the answer's body
    delivery.refresh_from_db()
    assert (delivery.status, delivery.response_status) == ("delivered", 200)
    assert peak < MOST_MEMORY, (
        f"delivering one webhook took {peak / 2**20:.0f} MiB of the worker's memory "
        f"({took:.1f} s) for an answer whose body importbeat never reads"
    )


def test_a_webhook_answered_200_with_a_body_that_is_not_the_gzip_it_claims_is_delivered(alice):
    """The receiver took the webhook: its status says so, whatever its body is."""
    hook = Hook(headers={"Content-Encoding": "gzip"}, body=b"ok")
    try:
        delivery = failed_run_notified(alice, hook.url)
        webhooks.deliver(delivery.pk)
    finally:
        hook.close()

    delivery.refresh_from_db()
    assert len(hook.requests) == 1
    said = (delivery.status, delivery.response_status, delivery.error)
    assert said == ("delivered", 200, ""), said


def test_a_webhook_answered_200_with_a_body_that_never_ends_is_delivered_at_once(alice):
    """A receiver that answered 200 and kept streaming its body was cut off at 20 s as "no
    whole answer", retried, and its host marked not answering for every owner."""
    hook = Hook(headers={"Content-Length": str(10**9)}, body=endless)
    try:
        delivery = failed_run_notified(alice, hook.url)
        started = time.monotonic()
        webhooks.deliver(delivery.pk)
        took = time.monotonic() - started
    finally:
        hook.close()

    delivery.refresh_from_db()
    assert (delivery.status, delivery.response_status) == ("delivered", 200), delivery.error
    assert took < 5, f"delivering took {took:.1f} s"
    # and it asked for the body as it is, not compressed
    ((headers, _),) = hook.requests
    assert headers["Accept-Encoding"] == "identity"
