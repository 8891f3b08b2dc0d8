"""A header credential the HTTP client cannot send (or the server would read otherwise) is
refused when it is saved, through the API and the admin alike, naming the part and the rule;
before, it was accepted and failed every fetch ("the request failed (InvalidHeader)")."""

import pytest

from schedules.models import ScheduledImport
from tests.api_support import API, client_for
from tests.factories import make_import
from tests.test_admin_imports import form_data

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("encryption_key")]

SOURCE = "https://files.example.com/products.csv"
SECRET = "k3y-456-secret"
EDGES = "must not start or end with a space or a tab"
CONTROLS = "must not contain line breaks, tabs or other control characters"
ASCII = "must be plain ASCII text"
NAME = "is not a valid HTTP header name"

REFUSED = {
    "value-leading-space": ({"kind": "header", "name": "X-Api-Key", "value": f" {SECRET}"},
                            f"value: {EDGES}"),
    "value-trailing-space": ({"kind": "header", "name": "X-Api-Key", "value": f"{SECRET} "},
                             f"value: {EDGES}"),
    "value-trailing-tab": ({"kind": "header", "name": "X-Api-Key", "value": f"{SECRET}\t"},
                           f"value: {EDGES}"),
    "value-line-break": ({"kind": "header", "name": "X-Api-Key", "value": f"{SECRET}\r\nX: 1"},
                         "value must be one line"),
    "value-delete": ({"kind": "header", "name": "X-Api-Key", "value": f"{SECRET}\x7f"},
                     f"value: {CONTROLS}"),
    "value-escape": ({"kind": "header", "name": "X-Api-Key", "value": f"\x1b[2J{SECRET}"},
                     f"value: {CONTROLS}"),
    "value-euro": ({"kind": "header", "name": "X-Api-Key", "value": f"{SECRET}€"},
                   f"value: {ASCII}"),
    "name-space": ({"kind": "header", "name": "X Api Key", "value": SECRET},
                   f"name: 'X Api Key' {NAME}"),
    "name-colon": ({"kind": "header", "name": "X-Api:Key", "value": SECRET},
                   f"name: 'X-Api:Key' {NAME}"),
    "name-accent": ({"kind": "header", "name": "X-Clé", "value": SECRET}, f"name: 'X-Clé' {NAME}"),
    "token-leading-space": ({"kind": "bearer", "token": f" {SECRET}"}, f"token: {EDGES}"),
    "token-non-ascii": ({"kind": "bearer", "token": f"{SECRET}é"}, f"token: {ASCII}"),
}  # fmt: skip


def body(credential: dict) -> dict:
    return {
        "name": "products", "source_url": SOURCE, "dataset": "products", "key_column": "sku",
        "schedule_type": "interval", "interval_seconds": 3600, "credential": credential,
    }  # fmt: skip


@pytest.mark.parametrize(("credential", "rule"), REFUSED.values(), ids=REFUSED.keys())
def test_the_api_refuses_a_credential_the_client_cannot_send(alice, credential, rule):
    answer = client_for(alice).post(f"{API}/imports/", body(credential), format="json")

    assert answer.status_code == 400
    [message] = answer.json()["errors"]["credential"]
    assert message.startswith(rule), message
    assert SECRET not in answer.content.decode()
    assert not ScheduledImport.objects.exists()


def test_the_api_refuses_it_on_an_update_and_keeps_the_saved_credential(alice):
    client = client_for(alice)
    pk = client.post(f"{API}/imports/", body({"kind": "bearer", "token": SECRET}), format="json")
    pk = pk.json()["id"]

    answer = client.patch(
        f"{API}/imports/{pk}/",
        {"credential": {"kind": "header", "name": "X-Api-Key", "value": "padded "}},
        format="json",
    )

    assert answer.status_code == 400
    [message] = answer.json()["errors"]["credential"]
    assert message.startswith(f"value: {EDGES}"), message
    assert ScheduledImport.objects.get(pk=pk).credential_kind == "bearer"


@pytest.mark.parametrize(
    "credential",
    [
        {"kind": "header", "name": "X-Api-Key", "value": "key with inner spaces"},
        {"kind": "header", "name": "x_api.key~1", "value": "=:;,/?@[]{}"},
        {"kind": "bearer", "token": "eyJhbGciOi.eyJzdWIi.SflKxw-_RJSM"},
        {"kind": "basic", "username": "feed", "password": "  spaces are fine, it is base64 é "},
    ],
    ids=["inner-spaces", "token-characters", "jwt", "basic-any-text"],
)
def test_a_credential_the_client_can_send_is_saved(alice, credential):
    answer = client_for(alice).post(f"{API}/imports/", body(credential), format="json")

    assert answer.status_code == 201, answer.content


def admin_sets(admin_client, imp, kind: str, username: str, password: str):
    """Staff set `imp`'s credential on its admin page (user name / header name, password /
    token / value)."""
    return admin_client.post(
        f"/admin/schedules/scheduledimport/{imp.pk}/change/",
        form_data(imp, credential=kind, credential_username=username,
                  credential_password=password, notify_on="[]", notify_channels='["email"]'),
    )  # fmt: skip


@pytest.mark.parametrize(
    ("name", "value", "rule"),
    [
        ("X-Api-Key", f" {SECRET}", f"value: {EDGES}"),
        ("X-Api-Key", f"{SECRET}€", f"value: {ASCII}"),
        ("X Api Key", SECRET, f"name: 'X Api Key' {NAME}"),
    ],
    ids=["value-leading-space", "value-euro", "name-space"],
)
def test_the_admin_refuses_a_header_credential_the_client_cannot_send(
    admin_client, alice, name, value, rule
):
    imp = make_import(alice, SOURCE)

    answer = admin_sets(admin_client, imp, "header", name, value)

    assert answer.status_code == 200
    [message] = answer.context["adminform"].form.errors["credential"]
    assert message.startswith(rule), message
    assert SECRET not in answer.content.decode()
    imp.refresh_from_db()
    assert imp.credential_kind == ""


def test_the_admin_keeps_a_password_as_typed(admin_client, alice):
    from schedules import credentials

    imp = make_import(alice, SOURCE)

    answer = admin_sets(admin_client, imp, "basic", "feed", " ends with a space ")

    assert answer.status_code == 302, answer.context["adminform"].form.errors
    imp.refresh_from_db()
    assert credentials.decrypt(imp.credential_secret)["password"] == " ends with a space "
