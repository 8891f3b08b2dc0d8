"""A body field an endpoint does not write is a 400 naming the ones it does, never silently
ignored: `PATCH {"status": "paused"}` answered 200 and the import ran at 2 AM all the same,
and a misspelt `cron_expresion` left the schedule as it was (schedules/api/body_fields.py)."""

import pytest
from knox.models import AuthToken
from rest_framework.test import APIClient

from schedules.models import ScheduledImport
from tests.api_support import (
    API,
    SOURCE,
    api_schema,
    client_for,
    import_body,
    make_run,
    operation_url,
)
from tests.factories import make_import

pytestmark = pytest.mark.django_db


def documented_bodies() -> list[tuple[str, str, list[str]]]:
    """Every operation that takes a body, with the fields its request body documents."""
    schema = api_schema()
    components = schema["components"]["schemas"]
    operations = []
    for path, methods in schema["paths"].items():
        for method, op in methods.items():
            if method not in ("post", "put", "patch"):
                continue
            fields: list[str] = []
            if "requestBody" in op:
                ref = op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
                fields = sorted(components[ref.rsplit("/", 1)[1]]["properties"])
            operations.append((method, path, fields))
    return operations


@pytest.mark.parametrize(("method", "path", "documented"), documented_bodies())
def test_every_body_refuses_a_field_it_does_not_document(alice, method, path, documented):
    # Given an import of alice's with a failed run, and her one token
    imp = make_import(alice, SOURCE)
    run = make_run(imp, "failed")
    client = client_for(alice)
    url = operation_url(path, imp, run)
    body = {"username": "alice", "password": "alice-password"} if "token" in path else {}

    # When she sends a field the endpoint does not document
    response = getattr(client, method)(url, {**body, "colour": "red"}, format="json")

    # Then it is a 400 naming exactly what the schema documents
    takes = f"takes: {', '.join(documented)}" if documented else "takes no body"
    assert response.status_code == 400, response.content
    assert response.json()["errors"] == {"colour": [f"unknown field; this endpoint {takes}"]}
    # and nothing was done: no token made or revoked, no run queued, nothing changed
    imp.refresh_from_db()
    assert (imp.status, imp.runs.count(), imp.name) == ("active", 1, "products")
    assert AuthToken.objects.filter(user=alice).count() == 1


def test_a_status_sent_in_a_patch_is_refused_saying_how_to_pause(alice):
    imp = make_import(alice, SOURCE)

    response = client_for(alice).patch(
        f"{API}/imports/{imp.pk}/", {"status": "paused", "description": "x"}, format="json"
    )

    assert response.status_code == 400, response.content
    assert response.json()["errors"] == {
        "status": [
            "read-only; pause, resume or cancel the import with POST /imports/{id}/pause, "
            "/resume or /cancel"
        ]
    }
    imp.refresh_from_db()
    assert (imp.status, imp.description) == ("active", "")


def test_a_put_takes_back_the_representation_a_get_gave(alice):
    # Given the representation of alice's import, its interval changed
    imp = make_import(alice, SOURCE)
    client = client_for(alice)
    body = client.get(f"{API}/imports/{imp.pk}/").json()
    body["interval_seconds"] = 7200

    # When she PUTs it back whole, read-only fields and all
    response = client.put(f"{API}/imports/{imp.pk}/", body, format="json")

    # Then the change is made; the read-only fields are the server's
    assert response.status_code == 200, response.content
    imp.refresh_from_db()
    assert imp.interval_seconds == 7200
    # but a misspelt field is still refused there
    body["interval_secs"] = 60
    response = client.put(f"{API}/imports/{imp.pk}/", body, format="json")
    assert response.status_code == 400 and list(response.json()["errors"]) == ["interval_secs"]


def test_a_put_that_changes_the_status_is_refused_saying_how_to_pause(alice):
    # Bug 8 of the API hunt: the PUT answered 200, the import stayed active and its runs went
    # ahead
    imp = make_import(alice, SOURCE)
    client = client_for(alice)
    body = client.get(f"{API}/imports/{imp.pk}/").json()

    response = client.put(
        f"{API}/imports/{imp.pk}/", {**body, "status": "paused", "description": "x"}, format="json"
    )

    assert response.status_code == 400, response.content
    assert response.json()["errors"] == {
        "status": [
            "read-only; pause, resume or cancel the import with POST /imports/{id}/pause, "
            "/resume or /cancel"
        ]
    }
    imp.refresh_from_db()
    assert (imp.status, imp.description) == ("active", "")


@pytest.mark.parametrize(
    ("field", "value", "said"),
    [
        ("owner", "bob", "read-only; an import stays with the user who created it"),
        ("id", 10**6, "read-only; the import a PUT changes is the one its path names"),
    ],
)
def test_a_put_that_changes_another_read_only_field_is_refused(alice, bob, field, value, said):
    imp = make_import(alice, SOURCE)
    client = client_for(alice)
    body = client.get(f"{API}/imports/{imp.pk}/").json()

    response = client.put(f"{API}/imports/{imp.pk}/", {**body, field: value}, format="json")

    assert response.status_code == 400, response.content
    assert response.json()["errors"] == {field: [said]}


def test_a_put_from_an_older_get_keeps_what_the_server_moved_since(alice):
    # Given the representation of alice's paused import, read before a run changed its
    # counters and its last result
    imp = make_import(alice, SOURCE)
    client = client_for(alice)
    client.post(f"{API}/imports/{imp.pk}/pause")
    body = client.get(f"{API}/imports/{imp.pk}/").json()
    ScheduledImport.objects.filter(pk=imp.pk).update(
        total_runs=1, failed_runs=1, consecutive_failures=1, last_run_status="failed"
    )

    # When she PUTs it back with a new description
    response = client.put(f"{API}/imports/{imp.pk}/", {**body, "description": "x"}, format="json")

    # Then it is taken: the counters are the server's, the status is sent unchanged
    assert response.status_code == 200, response.content
    assert (response.json()["status"], response.json()["total_runs"]) == ("paused", 1)
    assert response.json()["description"] == "x"


def test_a_put_of_my_account_that_makes_me_staff_is_refused(alice):
    client = client_for(alice)
    me = client.get(f"{API}/me").json()

    unchanged = client.put(f"{API}/me", me, format="json")
    made_staff = client.put(f"{API}/me", {**me, "is_staff": True}, format="json")

    assert unchanged.status_code == 200, unchanged.content
    assert made_staff.status_code == 400, made_staff.content
    assert made_staff.json()["errors"] == {"is_staff": ["read-only; the server sets it"]}
    alice.refresh_from_db()
    assert alice.is_staff is False


@pytest.mark.parametrize(
    ("field", "said"),
    [
        ("emial", "unknown field; this endpoint takes: email, notify_channels, notify_on"),
        ("is_staff", "read-only; the server sets it"),
    ],
)
def test_my_account_refuses_what_it_does_not_change(alice, field, said):
    response = client_for(alice).patch(
        f"{API}/me", {field: True if field == "is_staff" else "new@example.com"}, format="json"
    )

    assert response.status_code == 400, response.content
    assert response.json()["errors"] == {field: [said]}
    alice.refresh_from_db()
    assert (alice.email, alice.is_staff) == ("alice@example.com", False)


def test_a_login_form_with_another_field_is_refused(alice):
    response = APIClient().post(
        f"{API}/auth/token",
        {"username": "alice", "password": "alice-password", "remember": "1"},
    )

    assert response.status_code == 400, response.content
    assert list(response.json()["errors"]) == ["remember"]
    assert not AuthToken.objects.exists()


def test_a_create_refuses_a_status_too(alice):
    response = client_for(alice).post(
        f"{API}/imports/", import_body(status="paused"), format="json"
    )

    assert response.status_code == 400 and list(response.json()["errors"]) == ["status"]
    assert not ScheduledImport.objects.exists()


def test_an_endpoint_that_takes_no_body_refuses_one_that_is_no_object(alice):
    # [1, 2] or "x" was taken in silence (the import paused); an object was refused
    client = client_for(alice)
    imp = make_import(alice, SOURCE)

    for body in ([1, 2], "x"):
        response = client.post(f"{API}/imports/{imp.pk}/pause", body, format="json")
        assert response.status_code == 400, body
        assert response.json()["errors"] == {"non_field_errors": ["this endpoint takes no body"]}
    imp.refresh_from_db()
    assert imp.status == "active"
    # ... and HEAD of /me answers as every other GET does (it was a 405)
    assert client.head(f"{API}/me").status_code == 200
