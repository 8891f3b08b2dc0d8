"""A user deleted (the admin, code) takes their imports, datasets, records and runs along. The
deletion was refused while they owned an import: "Deleting the user 'alice' would require
deleting the following protected related objects: Scheduled import: products"."""

from __future__ import annotations

import pytest

from schedules import services
from schedules.models import Dataset, ImportRun, Record, ScheduledImport
from tests.api_support import make_run
from tests.factories import PRODUCTS_CSV, make_import
from tests.importer_support import run_now

pytestmark = pytest.mark.django_db


def test_a_user_deleted_in_the_admin_takes_what_they_own_along(
    client, django_user_model, alice, csv_server
):
    # Given alice's import, its runs and its dataset's records, and bob's import
    imp = make_import(alice, csv_server.serve("/p.csv", PRODUCTS_CSV))
    run_now(imp)
    make_run(imp, "failed")
    bob = django_user_model.objects.create_user("bob", password="x")
    kept = make_import(bob, csv_server.serve("/p.csv", PRODUCTS_CSV))
    client.force_login(django_user_model.objects.create_superuser("root", "r@x.org", "x"))

    # When staff delete alice
    response = client.post(f"/admin/auth/user/{alice.pk}/delete/", {"post": "yes"})

    # Then she is gone with her imports, runs, datasets and records; bob keeps his
    assert response.status_code == 302
    assert not django_user_model.objects.filter(pk=alice.pk).exists()
    assert list(ScheduledImport.objects.all()) == [kept]
    assert not ImportRun.objects.exists()
    assert list(Dataset.objects.all()) == [kept.dataset]
    assert not Record.objects.exists()


def test_a_dataset_an_import_writes_to_is_still_not_deleted_alone(alice):
    imp = make_import(alice, "https://example.com/p.csv")

    with pytest.raises(services.DatasetInUse):
        services.delete_dataset(imp.dataset)
    with pytest.raises(Exception, match="restricted"):
        imp.dataset.delete()


def test_the_admins_confirmation_of_a_users_deletion_counts_what_goes_along(
    client, django_user_model, alice, csv_server
):
    # Given alice's import, its runs, and her dataset of 20,000 records
    from django.db import connection

    imp = make_import(alice, csv_server.serve("/p.csv", PRODUCTS_CSV))
    run_now(imp)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {Record._meta.db_table} (dataset_id, key, data, content_hash,"
            " created_at, updated_at) SELECT %s, 'K-' || n, '{}', n, now(), now()"
            " FROM generate_series(1, 20000) n",
            [imp.dataset_id],
        )
    services.recount_records([imp.dataset_id])
    client.force_login(django_user_model.objects.create_superuser("root", "r@x.org", "x"))

    # When staff open the confirmation of her deletion
    page = client.get(f"/admin/auth/user/{alice.pk}/delete/").content.decode()

    # Then what goes along is counted, not listed: a link per record made 17 MB and 20 s at
    # 200,000 records, and a user with millions could not be deleted at all
    assert len(page) < 100_000, len(page)
    assert "Records: 20003" in page  # the file's three and the 20,000
    assert "Import runs: 1" in page
    assert "Scheduled import" in page and "K-17" not in page
    response = client.post(f"/admin/auth/user/{alice.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302 and not Record.objects.exists()


def test_a_users_records_are_deleted_a_range_of_ids_at_a_time(
    django_user_model, alice, monkeypatch
):
    # Django's cascade deleted them in one statement: past the web's statement limit at
    # millions of records (a 500, nothing deleted)
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    dataset = Dataset.objects.create(owner=alice, name="big")
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {Record._meta.db_table} (dataset_id, key, data, content_hash,"
            " created_at, updated_at) SELECT %s, 'K-' || n, '{}', n, now(), now()"
            " FROM generate_series(1, 5000) n",
            [dataset.pk],
        )
    monkeypatch.setattr(services, "RECORD_IDS_PER_DELETE", 1000)

    with CaptureQueriesContext(connection) as queries:
        alice.delete()

    deletes = [
        q["sql"] for q in queries if q["sql"].startswith(f'DELETE FROM "{Record._meta.db_table}"')
    ]
    # (Django's cascade still asks once, and finds none left)
    assert len([sql for sql in deletes if '"id" >= ' in sql]) == 5, deletes
    assert not Record.objects.exists()
