"""A redirected webhook says where it redirects and that redirects are not followed
(regression, notifications hunt).

importbeat does not follow a callback's redirect, so that a public URL cannot bounce the POST to
an internal one. The commonest redirect is a receiver moved to https, or a URL without its
trailing slash: `http://hooks.example.com/in` answers `301 Location: https://hooks.example.com/in/`.
The delivery log said only "the callback answered HTTP 301", `failed` for good: nothing said
that redirects are not followed, nor where the receiver pointed, which is the URL to set.
"""

from __future__ import annotations

import pytest

from schedules.models import NotificationDelivery
from tasks import webhooks
from tests.webhook_support import Hook, failed_run_notified

pytestmark = pytest.mark.django_db

NOT_FOLLOWED = "redirects are not followed; set the import's callback_url to where it redirects"


def moved(status: int, location: str | None) -> Hook:
    """Answers every POST `status`, with `location` (if any) as its Location."""
    return Hook(status=status, headers={} if location is None else {"Location": location},
                path="/in")  # fmt: skip


def delivered_to(owner, receiver: Hook) -> NotificationDelivery:
    delivery = failed_run_notified(owner, receiver.url)
    try:
        webhooks.deliver(delivery.pk)
    finally:
        receiver.close()
    delivery.refresh_from_db()
    return delivery


def test_a_redirected_webhook_says_it_is_not_followed_and_where_it_pointed(alice):
    # Given a callback moved to https
    receiver = moved(301, "https://hooks.example.com/in/")

    # When a notification is posted to it, then its log says where to and what to do
    delivery = delivered_to(alice, receiver)
    assert (delivery.status, delivery.response_status) == ("failed", 301)
    assert delivery.error == (
        "the callback answered HTTP 301, redirecting to https://hooks.example.com/in/: "
        + NOT_FOLLOWED
    )


def test_a_relative_redirect_is_said_as_the_url_it_points_to(alice):
    receiver = moved(308, "/in/")
    delivery = delivered_to(alice, receiver)
    assert delivery.error == (
        f"the callback answered HTTP 308, redirecting to {receiver.url}/: {NOT_FOLLOWED}"
    )


def test_a_redirect_to_a_url_with_a_password_does_not_say_the_password(alice):
    receiver = moved(307, "https://relay:s3cret@hooks.example.com/in/")
    delivery = delivered_to(alice, receiver)
    assert "s3cret" not in delivery.error
    assert "redirecting to https://relay:***@hooks.example.com/in/:" in delivery.error


def test_a_redirect_without_a_location_says_redirects_are_not_followed(alice):
    delivery = delivered_to(alice, moved(302, None))
    assert (delivery.status, delivery.error) == (
        "failed",
        "the callback answered HTTP 302, a redirect (redirects are not followed)",
    )


def test_a_redirect_to_a_malformed_location_is_said_as_a_redirect(alice):
    # Regression (review): joining it to the callback's URL raised, the delivery an unexpected
    # error instead of the redirect it was
    receiver = Hook(status=301, headers={"Location": "http://[oops/in"}, path="/in")
    delivery = failed_run_notified(alice, receiver.url)
    try:
        webhooks.deliver(delivery.pk)
    finally:
        receiver.close()
    delivery.refresh_from_db()
    assert (delivery.status, delivery.response_status) == ("failed", 301)
    assert "the callback answered HTTP 301" in delivery.error
