"""A credential whose `kind` is not text is a 400 naming the field, not a 500.

Regression (API hunt): `schedules/credentials.py` looked the kind up in a dict (`kind not in
KINDS`): a list or an object there raised TypeError (unhashable), and a script that built its
body wrong met `{"detail": "Internal server error."}`.
"""

import pytest

from tests.api_support import API, SOURCE, client_for, import_body
from tests.factories import make_import

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("kind", [[], {}, ["basic"], {"basic": True}])
def test_a_credential_kind_that_is_no_text_is_refused_on_create(alice, kind):
    # Given alice's client
    client = client_for(alice)

    # When she creates an import whose credential's kind is a list or an object
    body = import_body(credential={"kind": kind, "username": "u", "password": "p"})
    response = client.post(f"{API}/imports/", body, format="json")

    # Then it is a 400 on `credential`, in words
    assert response.status_code == 400, response.json()
    assert "credential" in response.json()["errors"]


@pytest.mark.parametrize("kind", [[], {}])
def test_a_credential_kind_that_is_no_text_is_refused_on_edit(alice, kind):
    # Given alice's import
    client = client_for(alice)
    imp = make_import(alice, SOURCE)

    # When she edits its credential with a kind that is a list or an object
    response = client.patch(
        f"{API}/imports/{imp.pk}/", {"credential": {"kind": kind}}, format="json"
    )

    # Then it is a 400 on `credential`, in words
    assert response.status_code == 400, response.json()
    assert "credential" in response.json()["errors"]
