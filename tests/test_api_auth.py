"""Tokens: issued for a username and password, hashed at rest, revocable; no token, no API."""

import pytest
from knox.models import AuthToken
from rest_framework.test import APIClient

from tests.api_support import API, reset_throttle, tables_compiled

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_login_budget():
    # Every test here logs in from the same address; each starts with a full budget.
    reset_throttle("login", "127.0.0.1")
    yield
    reset_throttle("login", "127.0.0.1")


def login(username: str, password: str):
    return APIClient().post(
        f"{API}/auth/token", {"username": username, "password": password}, format="json"
    )


def test_a_username_and_password_get_a_token_that_opens_the_api(alice):
    # When alice exchanges her password for a token
    response = login("alice", "alice-password")

    # Then the token is returned once and authenticates her requests
    assert response.status_code == 201
    token = response.json()["token"]
    assert response.json()["username"] == "alice" and response.json()["expiry"] is None
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert client.get(f"{API}/imports/").status_code == 200


def test_tokens_are_stored_hashed(alice):
    token = login("alice", "alice-password").json()["token"]

    stored = AuthToken.objects.get(user=alice)
    assert token not in (stored.digest, stored.token_key)
    assert len(stored.digest) == 128  # SHA-512 hex


def test_a_wrong_password_is_a_401(alice):
    response = login("alice", "guess")

    assert response.status_code == 401
    assert response.json() == {"detail": "wrong username or password"}
    assert response["WWW-Authenticate"] == "Token"


def test_a_password_with_spaces_at_its_ends_gets_a_token_as_typed(alice):
    # Given a password beginning and ending with a space, which the admin's login takes
    alice.set_password("  correct horse battery  ")
    alice.save()

    # When alice logs in with it as typed, then she gets a token; trimmed, it is wrong
    assert login("alice", "  correct horse battery  ").status_code == 201
    assert login("alice", "correct horse battery").status_code == 401


def test_a_login_without_a_password_is_a_400_naming_it(alice):
    response = APIClient().post(f"{API}/auth/token", {"username": "alice"}, format="json")

    assert response.status_code == 400
    assert "password" in response.json()["errors"]


def test_no_token_or_a_bad_token_is_a_401(alice):
    anonymous = APIClient().get(f"{API}/imports/")
    forged = APIClient()
    forged.credentials(HTTP_AUTHORIZATION="Token ib_not-a-real-token")

    assert anonymous.status_code == 401 and anonymous.json()["detail"]
    assert forged.get(f"{API}/imports/").status_code == 401


def test_logout_revokes_the_token_it_was_sent_with_and_only_that_one(alice):
    # Given two tokens of alice
    first = login("alice", "alice-password").json()["token"]
    second = login("alice", "alice-password").json()["token"]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {first}")

    # When she logs out with the first
    assert client.post(f"{API}/auth/logout").status_code == 204

    # Then the first no longer works and the second still does
    assert client.get(f"{API}/imports/").status_code == 401
    client.credentials(HTTP_AUTHORIZATION=f"Token {second}")
    assert client.get(f"{API}/imports/").status_code == 200


def test_logoutall_revokes_every_token_of_the_user(alice):
    first = login("alice", "alice-password").json()["token"]
    second = login("alice", "alice-password").json()["token"]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {first}")

    assert client.post(f"{API}/auth/logoutall").status_code == 204

    client.credentials(HTTP_AUTHORIZATION=f"Token {second}")
    assert client.get(f"{API}/imports/").status_code == 401
    assert not AuthToken.objects.filter(user=alice).exists()


def test_password_guessing_is_throttled(alice, settings):
    # Given a budget of 3 attempts a minute per address
    settings.API_LOGIN_RATE = "3/minute"

    codes = [login("alice", "guess").status_code for _ in range(4)]

    assert codes == [401, 401, 401, 429]


def test_a_token_is_also_accepted_as_a_bearer_token(alice):
    # Given a token of alice
    token = login("alice", "alice-password").json()["token"]

    # When it is sent under the Bearer scheme, as most HTTP clients do
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")

    # Then it opens the API like `Token` does; a forged one is still a 401
    assert client.get(f"{API}/imports/").status_code == 200
    client.credentials(HTTP_AUTHORIZATION="Bearer ib_not-a-real-token")
    assert client.get(f"{API}/imports/").status_code == 401


def test_a_form_encoded_login_gets_a_token(alice):
    # When alice logs in as `curl -d username=alice -d password=...` does
    response = APIClient().post(
        f"{API}/auth/token",
        "username=alice&password=alice-password",
        content_type="application/x-www-form-urlencoded",
    )

    # Then she gets a token, as with a JSON body
    assert response.status_code == 201, response.json()
    assert response.json()["username"] == "alice"


@pytest.mark.parametrize("scheme", ["Token", "Bearer"])
def test_a_request_reads_its_token_alone_however_many_the_user_holds(alice, scheme):
    # Given alice holds 50 tokens (one per script), one of them expired
    from datetime import timedelta

    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    for _ in range(49):
        AuthToken.objects.create(user=alice, expiry=None)
    _, expired = AuthToken.objects.create(user=alice, expiry=timedelta(hours=1))
    AuthToken.objects.filter(expiry__isnull=False).update(expiry=timezone.now() - timedelta(1))
    _, token = AuthToken.objects.create(user=alice, expiry=None)

    # When she calls the API with one of them
    client = APIClient(HTTP_AUTHORIZATION=f"{scheme} {token}")
    with CaptureQueriesContext(connection) as queries:
        response = client.get(f"{API}/me")

    # Then one query reads that token with its user, and none reads her other tokens
    assert response.status_code == 200
    token_reads = [q["sql"] for q in queries.captured_queries if "knox_authtoken" in q["sql"]]
    assert len(token_reads) == 1, token_reads
    assert "t.token_key =" in token_reads[0]
    # And the expired one is refused, and deleted when presented
    refused = APIClient(HTTP_AUTHORIZATION=f"{scheme} {expired}").get(f"{API}/me")
    assert refused.status_code == 401
    assert AuthToken.objects.filter(user=alice).count() == 50


def test_a_request_compiles_no_queryset_to_read_its_token(alice):
    # Every API request reads its token: compiled as a queryset, that read was half of the CPU
    # of a request that does nothing else (`GET /me`, issue 15). It is a statement written once.
    _, token = AuthToken.objects.create(user=alice, expiry=None)
    client = APIClient(HTTP_AUTHORIZATION=f"Token {token}")

    with tables_compiled() as compiled:
        response = client.get(f"{API}/me")

    assert response.status_code == 200
    assert response.json()["username"] == "alice"
    assert "knox_authtoken" not in compiled


def test_the_token_of_a_deactivated_user_is_refused(alice):
    _, token = AuthToken.objects.create(user=alice, expiry=None)
    alice.is_active = False
    alice.save(update_fields=["is_active"])

    response = APIClient(HTTP_AUTHORIZATION=f"Token {token}").get(f"{API}/me")

    assert response.status_code == 401
    assert response.json()["detail"] == "User inactive or deleted."
