"""`DELETE /datasets/{name}/`: the dataset and its records go; refused (409, naming them) while
imports still write to it."""

import pytest

from schedules.models import Dataset, Record
from tests.api_support import API, SOURCE, client_for
from tests.factories import make_import

pytestmark = pytest.mark.django_db


def test_a_dataset_that_imports_write_to_is_a_409_naming_them(alice):
    # Given two imports writing to one dataset, with a record
    first = make_import(alice, SOURCE, name="prices")
    second = make_import(alice, SOURCE, name="more prices")
    Record.objects.create(dataset=first.dataset, key="A-1", data={}, content_hash=0)

    # When alice deletes the dataset
    response = client_for(alice).delete(f"{API}/datasets/products/")

    # Then it is refused, naming both imports, and nothing is deleted
    assert response.status_code == 409
    assert response.json()["imports"] == [first.pk, second.pk]
    assert f"{first.pk} (prices)" in response.json()["detail"]
    assert f"{second.pk} (more prices)" in response.json()["detail"]
    assert Record.objects.filter(dataset=first.dataset).count() == 1


def test_a_dataset_left_behind_by_a_deleted_import_is_deleted_with_its_records(alice, bob):
    # Given alice's import deleted, leaving its dataset behind, and bob's dataset of that name
    imp = make_import(alice, SOURCE)
    Record.objects.create(dataset=imp.dataset, key="A-1", data={}, content_hash=0)
    bobs = make_import(bob, SOURCE)
    Record.objects.create(dataset=bobs.dataset, key="B-1", data={}, content_hash=0)
    client = client_for(alice)
    assert client.delete(f"{API}/imports/{imp.pk}/").status_code == 204

    # When she deletes the dataset
    response = client.delete(f"{API}/datasets/products/")

    # Then it is gone with its records; bob's is untouched
    assert response.status_code == 204
    assert not Dataset.objects.filter(owner=alice).exists()
    assert list(Record.objects.values_list("key", flat=True)) == ["B-1"]
    assert client.get(f"{API}/datasets/products/").status_code == 404
