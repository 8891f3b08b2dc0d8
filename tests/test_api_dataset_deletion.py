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


@pytest.mark.django_db(transaction=True)
def test_a_dataset_in_use_is_refused_at_once_while_a_merge_holds_it(alice):
    # The refusal waited for the merge in progress to release the dataset's lock (10 s at a
    # million records; past gunicorn's timeout at ten million)
    import threading

    import psycopg
    from django.db import connection

    imp = make_import(alice, SOURCE)
    holder = psycopg.connect(**connection.get_connection_params())
    holder.execute("SELECT 1 FROM schedules_dataset WHERE id = %s FOR UPDATE", [imp.dataset_id])
    # (the lock is let go after 30 s in any case, so that a refusal that waits for it ends)
    release = threading.Timer(30, holder.rollback)
    release.start()
    try:
        response = client_for(alice).delete(f"{API}/datasets/{imp.dataset.name}/")
        answered_while_held = release.is_alive()
    finally:
        release.cancel()
        holder.rollback()
        holder.close()

    assert response.status_code == 409
    assert answered_while_held
