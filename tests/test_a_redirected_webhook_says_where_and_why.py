"""A redirected webhook says where it redirects and that redirects are not followed
(regression, notifications hunt).

importbeat does not follow a callback's redirect, so that a public URL cannot bounce the POST to
an internal one. The commonest redirect is a receiver moved to https, or a URL without its
trailing slash: `http://hooks.example.com/in` answers `301 Location: https://hooks.example.com/in/`.
The delivery log said only "the callback answered HTTP 301", `failed` for good: nothing said
that redirects are not followed, nor where the receiver pointed, which is the URL to set.
"""

from __future__ import annotations

import http.server
import threading

import pytest

from schedules import services
from schedules.models import ImportRun, NotificationDelivery
from tasks import webhooks
from tests.factories import make_import
from tests.http_support import QuietHTTPServer

pytestmark = pytest.mark.django_db

SOURCE = "http://127.0.0.1:9/products.csv"
NOT_FOLLOWED = "redirects are not followed; set the import's callback_url to where it redirects"


class Moved:
    """Answers every POST `status`, with `location` (if any) as its Location."""

    def __init__(self, status: int, location: str | None) -> None:
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                self.send_response(status)
                if location is not None:
                    self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.httpd = QuietHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/in"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def delivered_to(owner, receiver: Moved) -> NotificationDelivery:
    imp = make_import(owner, SOURCE, notify_on=["failed"], notify_channels=["webhook"],
                      callback_url=receiver.url, alert_after_failures=0)  # fmt: skip
    run = ImportRun.objects.create(
        scheduled_import=imp, trigger="schedule", status="running", attempts=1
    )
    services.finish_run(run, "failed", error="boom")
    (delivery,) = NotificationDelivery.objects.all()
    try:
        webhooks.deliver(delivery.pk)
    finally:
        receiver.close()
    delivery.refresh_from_db()
    return delivery


def test_a_redirected_webhook_says_it_is_not_followed_and_where_it_pointed(alice):
    # Given a callback moved to https
    receiver = Moved(301, "https://hooks.example.com/in/")

    # When a notification is posted to it, then its log says where to and what to do
    delivery = delivered_to(alice, receiver)
    assert (delivery.status, delivery.response_status) == ("failed", 301)
    assert delivery.error == (
        "the callback answered HTTP 301, redirecting to https://hooks.example.com/in/: "
        + NOT_FOLLOWED
    )


def test_a_relative_redirect_is_said_as_the_url_it_points_to(alice):
    receiver = Moved(308, "/in/")
    delivery = delivered_to(alice, receiver)
    assert delivery.error == (
        f"the callback answered HTTP 308, redirecting to {receiver.url}/: {NOT_FOLLOWED}"
    )


def test_a_redirect_to_a_url_with_a_password_does_not_say_the_password(alice):
    receiver = Moved(307, "https://relay:s3cret@hooks.example.com/in/")
    delivery = delivered_to(alice, receiver)
    assert "s3cret" not in delivery.error
    assert "redirecting to https://relay:***@hooks.example.com/in/:" in delivery.error


def test_a_redirect_without_a_location_says_redirects_are_not_followed(alice):
    delivery = delivered_to(alice, Moved(302, None))
    assert (delivery.status, delivery.error) == (
        "failed",
        "the callback answered HTTP 302, a redirect (redirects are not followed)",
    )
