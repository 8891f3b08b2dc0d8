"""`GET`, `PATCH /me`: a user sets the e-mail their alerts go to (it was only settable in the
admin, and alerts were skipped with "owner has no email" in a worker's log)."""

import pytest
from rest_framework.test import APIClient

from tests.api_support import API, client_for

pytestmark = pytest.mark.django_db


def test_i_read_my_account(alice):
    response = client_for(alice).get(f"{API}/me")

    assert response.status_code == 200
    assert response.json() == {"username": "alice", "email": "alice@example.com", "is_staff": False}


def test_i_change_my_email_and_only_mine(alice, bob):
    # When alice sets a new e-mail, and tries to rename herself and become staff on the way
    response = client_for(alice).patch(
        f"{API}/me/",
        {"email": "ops@example.com", "username": "root", "is_staff": True},
        format="json",
    )

    # Then only her e-mail changed
    assert response.status_code == 200, response.json()
    alice.refresh_from_db()
    bob.refresh_from_db()
    assert (alice.email, alice.username, alice.is_staff) == ("ops@example.com", "alice", False)
    assert bob.email == "bob@example.com"


def test_a_malformed_email_is_a_400_naming_it(alice):
    response = client_for(alice).patch(f"{API}/me", {"email": "not-an-address"}, format="json")

    assert response.status_code == 400 and "email" in response.json()["errors"]


def test_me_needs_a_token():
    assert APIClient().get(f"{API}/me").status_code == 401
