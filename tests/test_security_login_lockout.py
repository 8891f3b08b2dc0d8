"""Password guessing is stopped: failures lock the username and the address, on the API and
the admin, and a forged X-Forwarded-For buys no new address (issue 11, point 1).

Regression: the login throttle keyed on X-Forwarded-For, so 60 wrong passwords, each with a
new header, all got 401 and then the right one worked; /admin/login/ had no limit at all.
"""

import pytest
from django.test import Client, RequestFactory
from rest_framework.test import APIClient

from common.security import client_ip
from tests.api_support import API, reset_throttle

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _limits(settings):
    # A generous throttle, so that what stops the guesser here is the lockout.
    settings.API_LOGIN_RATE = "1000/minute"
    settings.AXES_FAILURE_LIMIT = 5
    reset_throttle("login", "127.0.0.1")
    yield
    reset_throttle("login", "127.0.0.1")


def api_login(username: str, password: str, forwarded: str = ""):
    extra = {"HTTP_X_FORWARDED_FOR": forwarded} if forwarded else {}
    return APIClient().post(
        f"{API}/auth/token", {"username": username, "password": password}, format="json", **extra
    )


def admin_login(username: str, password: str, forwarded: str = ""):
    extra = {"HTTP_X_FORWARDED_FOR": forwarded} if forwarded else {}
    return Client().post(
        "/admin/login/?next=/admin/", {"username": username, "password": password}, **extra
    )


def test_sixty_guesses_each_with_a_new_forwarded_address_lock_the_account(alice):
    # When a guesser sends 60 wrong passwords, each claiming another address
    codes = [api_login("alice", f"guess-{i}", f"203.0.113.{i}").status_code for i in range(60)]

    # Then the first four are wrong passwords; the fifth failure locks, the rest are refused
    assert codes[:4] == [401] * 4
    assert set(codes[4:]) == {429}

    # And even the right password is refused while the lockout lasts
    locked = api_login("alice", "alice-password", "198.51.100.7")
    assert locked.status_code == 429
    assert "too many failed logins" in locked.json()["detail"]
    assert int(locked["Retry-After"]) > 0


def test_the_throttle_counts_the_peer_not_a_forwarded_header(alice, settings):
    settings.API_LOGIN_RATE = "3/minute"

    codes = [api_login("nobody", "guess", f"203.0.113.{i}").status_code for i in range(4)]

    assert codes == [401, 401, 401, 429]


def test_the_admin_login_locks_out_too(alice):
    alice.is_staff = True
    alice.save()

    codes = [admin_login("alice", f"guess-{i}", f"203.0.113.{i}").status_code for i in range(7)]

    # The admin's form answers a wrong password with 200 (the form again), then 429 from the
    # fifth failure on
    assert codes[:4] == [200] * 4
    assert codes[4:] == [429] * 3
    assert admin_login("alice", "alice-password").status_code == 429


def test_guessing_many_usernames_from_one_address_locks_the_address(alice, bob):
    for i in range(5):
        api_login(f"user-{i}", "guess")

    # bob's right password from that address is refused; nothing locks bob himself
    assert api_login("bob", "bob-password").status_code == 429


def test_behind_a_trusted_proxy_each_client_address_counts_on_its_own(alice, bob, settings):
    # Given a proxy on loopback that reports each client's address
    settings.TRUSTED_PROXIES = ["127.0.0.1"]

    # When one client address guesses five usernames
    for i in range(5):
        api_login(f"user-{i}", "guess", "203.0.113.9")

    # Then that address is locked out, and another client behind the same proxy is not
    assert api_login("bob", "bob-password", "203.0.113.9").status_code == 429
    assert api_login("bob", "bob-password", "198.51.100.7").status_code == 201


def test_forwarded_addresses_are_believed_only_from_a_trusted_proxy(settings):
    factory = RequestFactory()
    spoofed = factory.get("/", HTTP_X_FORWARDED_FOR="10.9.9.9", REMOTE_ADDR="203.0.113.5")
    settings.TRUSTED_PROXIES = []
    assert client_ip(spoofed) == "203.0.113.5"

    # A trusted proxy's report counts; what the client wrote before it does not
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    chain = factory.get(
        "/", HTTP_X_FORWARDED_FOR="6.6.6.6, 198.51.100.7, 10.0.0.2", REMOTE_ADDR="10.0.0.1"
    )
    assert client_ip(chain) == "198.51.100.7"
