"""`GET`, `PATCH /me`: a user sets the e-mail their alerts go to (it was only settable in the
admin, and alerts were skipped with "owner has no email" in a worker's log)."""

import pytest
from rest_framework.test import APIClient

from tests.api_support import API, client_for, import_body

pytestmark = pytest.mark.django_db


def test_i_read_my_account(alice):
    response = client_for(alice).get(f"{API}/me")

    assert response.status_code == 200
    assert response.json() == {
        "username": "alice",
        "email": "alice@example.com",
        "is_staff": False,
        "notify_on": [],
        "notify_channels": ["email", "webhook"],
    }


def test_i_change_my_email_and_only_mine(alice, bob):
    # When alice tries to rename herself and become staff on the way to a new e-mail
    client = client_for(alice)
    refused = client.patch(
        f"{API}/me/",
        {"email": "ops@example.com", "username": "root", "is_staff": True},
        format="json",
    )

    # Then she is told those are not hers to change, and nothing changed (they were
    # silently ignored before, her e-mail changed: a 200 that hid what was refused)
    assert refused.status_code == 400, refused.json()
    assert refused.json()["errors"] == {
        "is_staff": ["read-only; the server sets it"],
        "username": ["read-only; the server sets it"],
    }
    alice.refresh_from_db()
    assert (alice.email, alice.username, alice.is_staff) == ("alice@example.com", "alice", False)

    # When she sets her e-mail alone
    response = client.patch(f"{API}/me/", {"email": "ops@example.com"}, format="json")

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


def test_my_notification_defaults_apply_to_the_imports_i_create_from_then_on(alice, bob):
    # Given alice's import made before she sets her defaults
    client = client_for(alice)
    before = client.post(f"{API}/imports/", import_body(name="before"), format="json").json()

    # When she sets her defaults, then creates two imports, one choosing for itself
    response = client.patch(
        f"{API}/me",
        {"notify_on": ["failed", "succeeded"], "notify_channels": ["email"]},
        format="json",
    )
    after = client.post(f"{API}/imports/", import_body(name="after"), format="json").json()
    own = client.post(
        f"{API}/imports/", import_body(name="own", notify_on=["late"]), format="json"
    ).json()

    # Then the new import takes them; the old one, its own choice and bob's imports do not
    assert response.status_code == 200, response.json()
    assert response.json()["notify_on"] == ["failed", "succeeded"]
    assert (after["notify_on"], after["notify_channels"]) == (["failed", "succeeded"], ["email"])
    assert before["notify_on"] == [] and own["notify_on"] == ["late"]
    bobs = client_for(bob).post(f"{API}/imports/", import_body(), format="json").json()
    assert bobs["notify_on"] == []


def test_unknown_default_events_are_a_400_naming_the_valid_ones(alice):
    response = client_for(alice).patch(f"{API}/me", {"notify_on": ["sometimes"]}, format="json")

    assert response.status_code == 400
    assert "failed, partial, succeeded, recovered, late" in response.json()["detail"]


def test_defaults_of_webhooks_alone_are_refused_on_an_import_without_a_callback(alice):
    # Given alice's defaults send her failures by webhook alone (each import has its callback)
    client = client_for(alice)
    client.patch(f"{API}/me", {"notify_on": ["failed"], "notify_channels": ["webhook"]},
                 format="json")  # fmt: skip

    # When she creates an import without a callback URL, then it is refused, saying why (it
    # was created notifying no one); with one, it is created
    refused = client.post(f"{API}/imports/", import_body(name="quiet"), format="json")
    hooked = client.post(
        f"{API}/imports/",
        import_body(name="hooked", callback_url="https://hooks.example.com/in"),
        format="json",
    )

    assert refused.status_code == 400
    assert refused.json()["errors"] == {
        "notify_channels": [
            "a webhook is sent to the import's callback_url, and it has none: set one, or add "
            "email (these are your notification defaults, PATCH /me)"
        ]
    }
    assert hooked.status_code == 201, hooked.json()
    assert hooked.json()["notify_channels"] == ["webhook"]


def test_default_events_with_no_channel_are_refused_where_they_are_set(alice):
    # They were stored, and then every import alice created was a 400 on a field she never sent
    client = client_for(alice)
    response = client.patch(
        f"{API}/me", {"notify_on": ["failed"], "notify_channels": []}, format="json"
    )

    assert response.status_code == 400
    assert response.json()["errors"] == {
        "notify_channels": ["failed would notify on no channel: choose email or webhook"]
    }
    assert client.post(f"{API}/imports/", import_body(), format="json").status_code == 201
    # ... while no event at all, on no channel, is a choice
    quiet = {"notify_on": [], "notify_channels": []}
    assert client.patch(f"{API}/me", quiet, format="json").status_code == 200
