"""Guessing the `/metrics` password is locked out, as a login is.

Regression (attack hunt, finding 3): `/metrics` takes Flower's credentials (FLOWER_BASIC_AUTH)
by HTTP basic auth, and nothing counted its failures: an anonymous client got 401 on every
wrong password, as fast as the web answered, and the right one still worked after any number
of guesses. The password found is Flower's too. Its failures now count per address and per
name given, LOGIN_FAILURE_LIMIT within LOGIN_LOCKOUT_SECONDS, apart from logins
(schedules.metrics_guesses): counted as failed logins (django-axes), a Prometheus left with an
old password locked the account of Flower's user's name, and every user at its address, out of
their logins (review).
"""

from __future__ import annotations

import base64

import pytest
from rest_framework.test import APIClient

from tests.api_support import API, reset_throttle

pytestmark = pytest.mark.django_db

RIGHT = "correct-horse-battery"


@pytest.fixture(autouse=True)
def _credentials(settings):
    settings.FLOWER_BASIC_AUTH = f"ops:{RIGHT}"


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def scrape(client, user: str | None, password: str = "", address: str = "127.0.0.1"):
    auth = {"HTTP_AUTHORIZATION": basic(user, password)} if user is not None else {}
    return client.get("/metrics", REMOTE_ADDR=address, **auth)


def test_guessing_the_metrics_password_is_locked_out_the_right_one_included(client, settings):
    # When an anonymous client tries more passwords than a login takes
    answers = [
        scrape(client, "ops", f"guess-{n}").status_code
        for n in range(settings.LOGIN_FAILURE_LIMIT + 5)
    ]
    found = scrape(client, "ops", RIGHT)

    # Then its guesses are refused from the limit on, the right password too, with when to
    # come back
    limit = settings.LOGIN_FAILURE_LIMIT
    assert answers[: limit - 1] == [401] * (limit - 1)
    assert set(answers[limit - 1 :]) == {429}
    assert found.status_code == 429
    assert found["Retry-After"] == str(settings.LOGIN_LOCKOUT_SECONDS)
    assert "too many failed logins" in found.content.decode().lower()


def test_a_scrape_from_another_address_resets_no_guessers_count(client, settings):
    limit = settings.LOGIN_FAILURE_LIMIT
    # Given a guesser one failure short of the limit, under names that are not the operator's
    guesses = [scrape(client, f"user-{n}", "guess", "203.0.113.9") for n in range(limit - 1)]
    assert {answer.status_code for answer in guesses} == {401}

    # When Prometheus scrapes with the right credentials from its own address
    scraped = scrape(client, "ops", RIGHT, "10.0.0.2")

    # Then it is answered, and the guesser's next failure still locks its address
    assert scraped.status_code == 200
    assert scrape(client, "someone", "guess", "203.0.113.9").status_code == 429
    assert scrape(client, "ops", RIGHT, "203.0.113.9").status_code == 429
    assert scrape(client, "ops", RIGHT, "10.0.0.2").status_code == 200


def test_guesses_at_the_operators_name_from_many_addresses_lock_that_name(client, settings):
    # When each guess at the operator's name comes from another address
    for n in range(settings.LOGIN_FAILURE_LIMIT):
        scrape(client, "ops", f"guess-{n}", f"203.0.113.{n + 1}")

    # Then that name is locked out wherever it comes from
    assert scrape(client, "ops", RIGHT, "10.0.0.2").status_code == 429


def test_a_request_without_credentials_is_asked_for_them_and_counts_for_nothing(client, settings):
    # When a browser opens /metrics many times before it sends credentials
    asked = [scrape(client, None) for _ in range(settings.LOGIN_FAILURE_LIMIT + 5)]

    # Then each is asked to sign in, and the right credentials are answered
    assert {answer.status_code for answer in asked} == {401}
    assert asked[0]["WWW-Authenticate"] == 'Basic realm="importbeat metrics"'
    assert scrape(client, "ops", RIGHT).status_code == 200


SCRAPER = "10.0.0.2"


@pytest.fixture
def _fresh_login_budget():
    for address in ("127.0.0.1", SCRAPER):
        reset_throttle("login", address)
    yield
    for address in ("127.0.0.1", SCRAPER):
        reset_throttle("login", address)


def stale_scrapes(client, user: str, count: int) -> None:
    auth = "Basic " + base64.b64encode(f"{user}:the-old-password".encode()).decode()
    for _ in range(count):
        client.get("/metrics", REMOTE_ADDR=SCRAPER, HTTP_AUTHORIZATION=auth)


def login(username: str, password: str, address: str = "127.0.0.1"):
    return APIClient().post(
        f"{API}/auth/token",
        {"username": username, "password": password},
        format="json",
        REMOTE_ADDR=address,
    )


@pytest.mark.usefixtures("_fresh_login_budget")
def test_a_stale_scraper_does_not_lock_the_account_of_the_same_name_out(
    client, settings, django_user_model
):
    # Given Flower's user `admin`, and an operator's account of the same name
    settings.FLOWER_BASIC_AUTH = "admin:the-new-password"
    django_user_model.objects.create_user("admin", "ops@example.com", "admin-password")

    # When Prometheus, still on the old password, scrapes as many times as a login may fail
    stale_scrapes(client, "admin", settings.LOGIN_FAILURE_LIMIT + 2)

    # Then the operator still signs in with their own password, from their own desk
    assert login("admin", "admin-password").status_code == 201


@pytest.mark.usefixtures("_fresh_login_budget")
def test_a_stale_scraper_does_not_lock_its_hosts_users_out(client, settings, alice):
    # Given Flower's user `ops`
    settings.FLOWER_BASIC_AUTH = "ops:the-new-password"

    # When Prometheus, still on the old password, scrapes as many times as a login may fail
    stale_scrapes(client, "ops", settings.LOGIN_FAILURE_LIMIT + 2)

    # Then alice, behind the same address as the scraper, still signs in
    assert login("alice", "alice-password", SCRAPER).status_code == 201


def test_a_lockout_lasts_its_whole_period_after_the_last_guess(client, settings):
    # Counted from the first guess, a lockout reached late in that window lifted at once, while
    # its Retry-After said LOGIN_LOCKOUT_SECONDS (review)
    from common.redis_client import client as redis_client
    from schedules.metrics_guesses import PREFIX

    # Given a first wrong guess whose window is nearly over
    scrape(client, "ops", "guess-0", "203.0.113.9")
    keys = [f"{PREFIX}:address:203.0.113.9", f"{PREFIX}:name:ops"]
    for key in keys:
        redis_client().expire(key, 1)

    # When the rest of the limit's guesses come
    for n in range(1, settings.LOGIN_FAILURE_LIMIT):
        locked = scrape(client, "ops", f"guess-{n}", "203.0.113.9")

    # Then the lockout holds for the period its answer gives, from the last guess
    assert locked.status_code == 429
    assert locked["Retry-After"] == str(settings.LOGIN_LOCKOUT_SECONDS)
    for key in keys:
        assert redis_client().ttl(key) > settings.LOGIN_LOCKOUT_SECONDS - 5
