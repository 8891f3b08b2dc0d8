"""The import's admin page finds its dataset by a search, each result named with its owner:
a <select> of every user's datasets made the page seconds and megabytes at 20,000 datasets,
and two users' datasets called "sales" were two options of one name."""

import json

import pytest

from schedules.models import Dataset
from tests.api_support import SOURCE
from tests.factories import make_import

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("root", "r@example.com", "x"))
    return client


def test_the_import_page_lists_no_other_dataset(admin_client, alice, bob):
    imp = make_import(alice, SOURCE, dataset="sales")
    Dataset.objects.bulk_create(Dataset(owner=bob, name=f"other-{i}") for i in range(300))

    html = admin_client.get(f"/admin/schedules/scheduledimport/{imp.pk}/change/").content.decode()

    assert "other-1" not in html
    assert "alice / sales" in html  # the chosen one, named with its owner


def test_the_dataset_search_names_each_result_with_its_owner(admin_client, alice, bob):
    make_import(alice, SOURCE, dataset="sales")
    make_import(bob, SOURCE, dataset="sales")

    response = admin_client.get(
        "/admin/autocomplete/",
        {
            "app_label": "schedules", "model_name": "scheduledimport", "field_name": "dataset",
            "term": "sales",
        },
    )  # fmt: skip

    assert response.status_code == 200
    texts = sorted(result["text"] for result in json.loads(response.content)["results"])
    assert texts == ["alice / sales", "bob / sales"]
