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

import contextlib
import gzip
import http.server
import threading
import time
import tracemalloc

import pytest

from schedules import services
from schedules.models import ImportRun, NotificationDelivery
from tasks import webhooks
from tests.factories import make_import
from tests.http_support import QuietHTTPServer

pytestmark = pytest.mark.django_db

SOURCE = "http://127.0.0.1:9/products.csv"
INFLATED = 64 * 1024 * 1024  # what the answer's body decompresses to: 64 MiB
MOST_MEMORY = 8 * 1024 * 1024  # reading a status line takes far less


class BigAnswer:
    """Answers every POST 200, with a body of INFLATED zero bytes, gzip-encoded or not."""

    def __init__(self, gzipped: bool) -> None:
        raw = bytes(INFLATED)
        body = gzip.compress(raw, compresslevel=9) if gzipped else raw

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                if gzipped:
                    self.send_header("Content-Encoding", "gzip")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                with contextlib.suppress(OSError):
                    self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.httpd = QuietHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.mark.parametrize("gzipped", [True, False], ids=["gzip-bomb", "plain-64MiB"])
def test_a_webhook_answered_with_a_huge_body_costs_the_worker_no_memory(alice, gzipped):
    receiver = BigAnswer(gzipped)
    try:
        # Given an import whose failed runs notify a callback that answers with a huge body
        imp = make_import(alice, SOURCE, notify_on=["failed"], notify_channels=["webhook"],
                          callback_url=receiver.url, alert_after_failures=0)  # fmt: skip
        run = ImportRun.objects.create(
            scheduled_import=imp, trigger="schedule", status="running", attempts=1
        )
        services.finish_run(run, "failed", error="boom")
        (delivery,) = NotificationDelivery.objects.all()

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
    from tests.webhook_support import Hook

    hook = Hook()
    handler = hook.httpd.RequestHandlerClass

    class BadGzip(handler):  # type: ignore[misc, valid-type]
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            hook.requests.append((dict(self.headers), body))
            self.send_response(200)
            self.send_header("Content-Encoding", "gzip")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

    hook.httpd.RequestHandlerClass = BadGzip
    try:
        imp = make_import(alice, SOURCE, notify_on=["failed"], notify_channels=["webhook"],
                          callback_url=hook.url, alert_after_failures=0)  # fmt: skip
        run = ImportRun.objects.create(
            scheduled_import=imp, trigger="schedule", status="running", attempts=1
        )
        services.finish_run(run, "failed", error="boom")
        (delivery,) = NotificationDelivery.objects.all()
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
    from tests.webhook_support import Hook

    hook = Hook()
    handler = hook.httpd.RequestHandlerClass

    class Endless(handler):  # type: ignore[misc, valid-type]
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            hook.requests.append((dict(self.headers), body))
            self.send_response(200)
            self.send_header("Content-Length", str(10**9))
            self.end_headers()
            with contextlib.suppress(OSError):
                for _ in range(60):
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    time.sleep(0.5)

    hook.httpd.RequestHandlerClass = Endless
    try:
        imp = make_import(alice, SOURCE, notify_on=["failed"], notify_channels=["webhook"],
                          callback_url=hook.url, alert_after_failures=0)  # fmt: skip
        run = ImportRun.objects.create(
            scheduled_import=imp, trigger="schedule", status="running", attempts=1
        )
        services.finish_run(run, "failed", error="boom")
        (delivery,) = NotificationDelivery.objects.all()
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
