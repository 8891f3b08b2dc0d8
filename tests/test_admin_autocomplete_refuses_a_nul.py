"""The import form's autocomplete with a NUL in its term (hunt "surfaces", bug 5): PostgreSQL
refuses a NUL in text, and the term went into the query as typed, a 500. It finds nothing."""

import pytest

from tests.api_support import SOURCE
from tests.factories import make_import

pytestmark = pytest.mark.django_db

AUTOCOMPLETE = "/admin/autocomplete/"


def search(client, field: str, term: str):
    return client.get(
        AUTOCOMPLETE,
        {
            "app_label": "schedules",
            "model_name": "scheduledimport",
            "field_name": field,
            "term": term,
        },
    )


def test_a_nul_in_the_datasets_search_finds_nothing(admin_client, alice):
    make_import(alice, SOURCE)

    response = search(admin_client, "dataset", "prod\x00ucts")

    assert response.status_code == 200
    assert response.json()["results"] == []
    # while a term without one still finds the dataset
    assert [r["text"] for r in search(admin_client, "dataset", "prod").json()["results"]] == [
        "alice / products"
    ]


def test_a_nul_in_the_owners_search_finds_nothing(admin_client, alice):
    response = search(admin_client, "owner", "\x00")

    assert response.status_code == 200
    assert response.json()["results"] == []
