"""Source credentials are write-only: the API, the admin and the history say that one is set and
for which origin, never what it is; they are encrypted at rest under IMPORTBEAT_ENCRYPTION_KEY
and re-encrypted by `rotate_credentials` (issue 14)."""

import io

import pytest
from auditlog.models import LogEntry
from cryptography.fernet import Fernet
from django.core.management import CommandError, call_command
from django.db import connection

from schedules import credentials
from schedules.models import ScheduledImport
from tests.api_support import API, client_for
from tests.test_admin_imports import form_data

pytestmark = pytest.mark.django_db

SECRET = "s3cret-token-never-shown"
SOURCE = "https://files.example.com/products.csv"


def _body(**fields):
    return {
        "name": "products", "source_url": SOURCE, "dataset": "products", "key_column": "sku",
        "schedule_type": "interval", "interval_seconds": 3600,
        "credential": {"kind": "bearer", "token": SECRET}, **fields,
    }  # fmt: skip


def _stored() -> str:
    """Everything the database holds of the imports and their history, as text."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT row_to_json(i)::text FROM schedules_scheduledimport i")
        rows = [row[0] for row in cursor.fetchall()]
    return "\n".join(rows) + str(list(LogEntry.objects.values()))


def test_the_api_says_a_credential_is_set_and_never_returns_it(alice, encryption_key):
    client = client_for(alice)

    # When alice creates an import with a bearer token
    created = client.post(f"{API}/imports/", _body(), format="json")

    # Then every answer says it is set, for that origin, and none holds the token
    assert created.status_code == 201, created.content
    shown = {"kind": "bearer", "set": True, "origin": "https://files.example.com:443"}
    assert created.json()["credential"] == shown
    pk = created.json()["id"]
    answers = [
        created,
        client.get(f"{API}/imports/{pk}/"),
        client.get(f"{API}/imports/"),
        client.patch(f"{API}/imports/{pk}/", {"description": "d"}, format="json"),
        client.get(f"{API}/imports/{pk}/history/"),
    ]
    assert all(answer.status_code == 200 for answer in answers[1:])
    assert answers[3].json()["credential"] == shown  # a PATCH without it keeps it
    assert not [a.request["PATH_INFO"] for a in answers if SECRET in a.content.decode()]
    # ... and the database holds it encrypted only, the history not at all
    assert SECRET not in _stored()
    imp = ScheduledImport.objects.get(pk=pk)
    assert credentials.decrypt(imp.credential_secret)["token"] == SECRET

    # When alice removes it
    removed = client.patch(f"{API}/imports/{pk}/", {"credential": None}, format="json")
    assert removed.json()["credential"] is None
    assert ScheduledImport.objects.get(pk=pk).credential_secret == ""


def test_a_put_of_what_a_get_showed_keeps_the_credential_and_an_empty_one_is_refused(
    alice, encryption_key
):
    # A PUT of the GET's own body was a 400 ("unknown parts ... ['origin', 'set']"), and {}
    # removed the credential without a word
    client = client_for(alice)
    pk = client.post(f"{API}/imports/", _body(), format="json").json()["id"]
    shown = client.get(f"{API}/imports/{pk}/").json()

    put = client.put(f"{API}/imports/{pk}/", {**shown, "description": "put"}, format="json")
    emptied = client.patch(f"{API}/imports/{pk}/", {"credential": {}}, format="json")

    assert put.status_code == 200, put.content
    assert put.json()["credential"] == shown["credential"]
    assert emptied.status_code == 400
    assert emptied.json()["errors"]["credential"] == [
        "a credential needs a kind and its parts (null removes it)"
    ]
    imp = ScheduledImport.objects.get(pk=pk)
    assert (imp.description, credentials.decrypt(imp.credential_secret)["token"]) == (
        "put", SECRET,
    )  # fmt: skip


def test_a_credential_cannot_be_saved_without_an_encryption_key(alice, settings):
    settings.IMPORTBEAT_ENCRYPTION_KEYS = []

    answer = client_for(alice).post(f"{API}/imports/", _body(), format="json")

    assert answer.status_code == 400
    assert "IMPORTBEAT_ENCRYPTION_KEY" in answer.json()["errors"]["credential"][0]
    assert SECRET not in answer.content.decode()


@pytest.mark.parametrize(
    ("credential", "expected"),
    [
        ({"kind": "password", "password": SECRET}, "not for https sources"),
        ({"kind": "basic", "username": "u"}, "needs username, password"),
        ({"kind": "header", "name": "Host", "value": SECRET}, "cannot be used as the"),
        ({"kind": "private_key", "private_key": SECRET}, "not for https sources"),
        ("just-a-token", "object"),
    ],
)
def test_a_credential_that_does_not_fit_is_refused_without_repeating_it(
    alice, encryption_key, credential, expected
):
    answer = client_for(alice).post(f"{API}/imports/", _body(credential=credential), format="json")

    assert answer.status_code == 400
    assert expected in str(answer.json()["errors"]["credential"])
    assert SECRET not in answer.content.decode()


def test_a_source_moved_to_another_origin_needs_its_credential_given_again(alice, encryption_key):
    client = client_for(alice)
    pk = client.post(f"{API}/imports/", _body(), format="json").json()["id"]
    moved = {"source_url": "https://elsewhere.example.org/products.csv"}

    refused = client.patch(f"{API}/imports/{pk}/", moved, format="json")
    again = client.patch(
        f"{API}/imports/{pk}/",
        {**moved, "credential": {"kind": "bearer", "token": "new"}},
        format="json",
    )

    assert refused.status_code == 400
    assert "saved for https://files.example.com:443" in refused.json()["errors"]["credential"][0]
    assert again.status_code == 200
    assert again.json()["credential"]["origin"] == "https://elsewhere.example.org:443"


def test_rotation_reencrypts_with_the_first_key(alice, encryption_key, settings):
    pk = client_for(alice).post(f"{API}/imports/", _body(), format="json").json()["id"]
    old = ScheduledImport.objects.get(pk=pk).credential_secret

    # When the operator puts a new key first and runs the command
    new_key = Fernet.generate_key().decode()
    settings.IMPORTBEAT_ENCRYPTION_KEYS = [new_key, encryption_key]
    call_command("rotate_credentials")

    # Then the credential opens with the new key alone
    settings.IMPORTBEAT_ENCRYPTION_KEYS = [new_key]
    rotated = ScheduledImport.objects.get(pk=pk).credential_secret
    assert rotated != old
    assert credentials.decrypt(rotated)["token"] == SECRET


def test_the_admin_shows_a_credential_as_set_and_sets_one(admin_client, alice, encryption_key):
    pk = client_for(alice).post(f"{API}/imports/", _body(), format="json").json()["id"]

    page = admin_client.get(f"/admin/schedules/scheduledimport/{pk}/change/").content.decode()

    assert "bearer: set (for https://files.example.com:443)" in page
    assert SECRET not in page

    # When an admin sets a header credential through the form
    imp = ScheduledImport.objects.get(pk=pk)
    changed = admin_client.post(
        f"/admin/schedules/scheduledimport/{pk}/change/",
        form_data(imp, credential="header", credential_username="X-Key",
                  credential_password="from-the-admin", notify_on="[]",
                  notify_channels='["email"]'),
    )  # fmt: skip

    # Then it is saved encrypted, and the page shows only that it is set
    assert changed.status_code == 302, changed.context["adminform"].form.errors
    imp.refresh_from_db()
    assert credentials.decrypt(imp.credential_secret) == {
        "kind": "header", "name": "X-Key", "value": "from-the-admin"
    }  # fmt: skip
    page = admin_client.get(f"/admin/schedules/scheduledimport/{pk}/change/").content.decode()
    assert "header: set" in page and "from-the-admin" not in page


def test_rotation_names_a_credential_no_key_opens_and_rotates_the_others(
    alice, encryption_key, settings
):
    # Given two imports' credentials, one saved under a key the operator has since dropped
    client = client_for(alice)
    kept = client.post(f"{API}/imports/", _body(), format="json").json()["id"]
    settings.IMPORTBEAT_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    lost = client.post(f"{API}/imports/", _body(name="lost", dataset="lost"), format="json").json()[
        "id"
    ]
    settings.IMPORTBEAT_ENCRYPTION_KEYS = [Fernet.generate_key().decode(), encryption_key]

    # When the operator rotates, then the one no key opens is named (it was a bare InvalidToken
    # traceback, the rest left as they were) and the other is rotated
    opens_none = (
        rf"no IMPORTBEAT_ENCRYPTION_KEY opens the credential of import\(s\) {lost} \(lost\)"
    )
    with pytest.raises(CommandError, match=opens_none):
        call_command("rotate_credentials", stdout=io.StringIO())
    settings.IMPORTBEAT_ENCRYPTION_KEYS = settings.IMPORTBEAT_ENCRYPTION_KEYS[:1]
    assert credentials.decrypt(ScheduledImport.objects.get(pk=kept).credential_secret)

    # ... and with no key at all, it says so
    settings.IMPORTBEAT_ENCRYPTION_KEYS = []
    with pytest.raises(CommandError, match="no IMPORTBEAT_ENCRYPTION_KEY is configured"):
        call_command("rotate_credentials", stdout=io.StringIO())


def test_a_run_whose_credential_no_key_opens_any_more_says_so(alice, encryption_key, settings):
    # With every key removed it failed as "an unexpected error in importbeat"
    from tests.importer_support import run_now

    pk = client_for(alice).post(f"{API}/imports/", _body(), format="json").json()["id"]
    settings.IMPORTBEAT_ENCRYPTION_KEYS = []

    run = run_now(ScheduledImport.objects.get(pk=pk))

    assert (run.status, run.error_message) == (
        "failed",
        "the import's credential cannot be used: " + credentials.NO_KEY_TO_READ,
    )
