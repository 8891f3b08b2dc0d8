"""A dataset's records are keyed by one column (schedules/dataset_keys.py).

Before, an import whose key column was changed after its dataset had records (or a second
import keyed by another column, writing to the same dataset) added every row as a new record
beside the one it meant to update: the dataset held each row twice, and every run said
`succeeded`. Now such an edit is refused, saying why; a run that meets records keyed otherwise
anyway fails and writes nothing; mode sync may change the key, its next run replacing every
record.
"""

import pytest

from schedules.models import Dataset, ScheduledImport
from tests.api_support import API, client_for
from tests.factories import make_import
from tests.importer_support import records, run_now
from tests.saved_runs_support import run_data_migration
from tests.test_admin_imports import CHANGELIST, form_data

pytestmark = pytest.mark.django_db

FILE = "sku,id,name\nA-1,1,Anvil\nB-2,2,Bucket\n"
KEYED_BY_SKU = (
    "dataset 'products' holds 2 record(s) keyed by 'sku': rows keyed by 'id' would land beside "
    "them, each row twice; keep the key column 'sku', write to another dataset, or use mode "
    "sync, whose next run replaces every record"
)


def loaded(owner, csv_server, **fields) -> ScheduledImport:
    """An import keyed by sku that loaded A-1 and B-2 into dataset products."""
    imp = make_import(owner, csv_server.serve("/p.csv", FILE), **fields)
    assert run_now(imp).status == "succeeded"
    return imp


def test_the_key_column_of_an_import_whose_dataset_has_records_stays(alice, csv_server):
    imp = loaded(alice, csv_server)

    answer = client_for(alice).patch(f"{API}/imports/{imp.pk}/", {"key_column": "id"})

    assert answer.status_code == 400, answer.text
    assert answer.json()["errors"] == {"key_column": [KEYED_BY_SKU]}
    # ... and its next run updates the records, adding none beside them
    run = run_now(imp)
    assert sorted(records(imp)) == ["A-1", "B-2"]
    assert (run.rows_inserted, run.rows_unchanged) == (0, 2)


def test_an_import_keyed_otherwise_cannot_write_to_the_dataset(alice, csv_server):
    loaded(alice, csv_server)

    answer = client_for(alice).post(
        f"{API}/imports/",
        {
            "name": "by id", "source_url": csv_server.serve("/q.csv", FILE),
            "dataset": "products", "key_column": "id",
            "schedule_type": "interval", "interval_seconds": 3600,
        },
    )  # fmt: skip

    assert answer.status_code == 400, answer.text
    assert answer.json()["errors"] == {"key_column": [KEYED_BY_SKU]}
    assert ScheduledImport.objects.count() == 1


def test_a_sync_import_may_change_its_key_its_next_run_replacing_the_records(alice, csv_server):
    imp = loaded(alice, csv_server, mode="sync")

    answer = client_for(alice).patch(f"{API}/imports/{imp.pk}/", {"key_column": "id"})

    assert answer.status_code == 200, answer.text
    run = run_now(imp)
    assert sorted(records(imp)) == ["1", "2"]
    assert (run.rows_inserted, run.rows_deleted) == (2, 2)
    dataset = client_for(alice).get(f"{API}/datasets/products/").json()
    assert (dataset["key_column"], dataset["record_count"]) == ("id", 2)


def test_the_key_column_of_an_import_whose_dataset_is_empty_may_change(alice, csv_server):
    imp = make_import(alice, csv_server.serve("/p.csv", FILE))

    answer = client_for(alice).patch(f"{API}/imports/{imp.pk}/", {"key_column": "id"})

    assert answer.status_code == 200, answer.text
    run_now(imp)
    assert sorted(records(imp)) == ["1", "2"]


def test_a_run_that_meets_records_keyed_otherwise_fails_and_writes_nothing(alice, csv_server):
    # Given an import whose key column changed without the check (an edit saved while its run
    # ran, as that run's settings were read before it)
    imp = loaded(alice, csv_server)
    ScheduledImport.objects.filter(pk=imp.pk).update(key_column="id")
    imp.refresh_from_db()

    run = run_now(imp)

    assert run.status == "failed"
    assert run.error_message == f"{KEYED_BY_SKU}; the dataset was not changed"
    assert sorted(records(imp)) == ["A-1", "B-2"]


@pytest.mark.django_db(transaction=True)  # the rows committed, as a migration finds them
def test_the_migration_notes_the_key_of_datasets_whose_imports_agree(alice, csv_server):
    url = csv_server.serve("/p.csv", FILE)
    # (two imports of one dataset, each saved while it was empty)
    make_import(alice, url, name="a", dataset="agreed")
    make_import(alice, url, name="b", dataset="agreed")
    make_import(alice, url, name="c", dataset="mixed")
    make_import(alice, url, name="d", dataset="mixed", key_column="id")

    run_data_migration("schedules", "0030_dataset_key_column")

    keys = dict(Dataset.objects.values_list("name", "key_column"))
    assert keys == {"agreed": "sku", "mixed": ""}


def test_the_admin_refuses_it_too(client, django_user_model, alice, csv_server):
    imp = loaded(alice, csv_server)
    client.force_login(django_user_model.objects.create_superuser("root", "root@x.org", "x"))

    response = client.post(
        f"{CHANGELIST}{imp.pk}/change/", form_data(imp, key_column="id", has_header="on")
    )

    assert response.status_code == 200
    assert response.context["adminform"].form.errors == {"key_column": [KEYED_BY_SKU]}
    assert ScheduledImport.objects.get(pk=imp.pk).key_column == "sku"


def test_an_import_keyed_otherwise_already_can_still_be_edited(alice, csv_server):
    # Given an import keyed otherwise than its dataset's records already (saved before datasets
    # noted their key)
    imp = loaded(alice, csv_server)
    ScheduledImport.objects.filter(pk=imp.pk).update(key_column="id")

    # When its owner edits what has nothing to do with its key
    answer = client_for(alice).patch(f"{API}/imports/{imp.pk}/", {"interval_seconds": 7200})

    # Then the edit is saved, and its runs say why they fail
    assert answer.status_code == 200, answer.text
    imp.refresh_from_db()
    assert run_now(imp).error_message == f"{KEYED_BY_SKU}; the dataset was not changed"


def test_a_check_before_save_says_it_too(alice, csv_server):
    loaded(alice, csv_server)
    body = {
        "name": "by id", "source_url": csv_server.serve("/q.csv", FILE), "dataset": "products",
        "key_column": "id", "schedule_type": "interval", "interval_seconds": 3600,
    }  # fmt: skip

    answer = client_for(alice).post(f"{API}/imports/check", body, format="json")

    assert answer.status_code == 400, answer.text
    assert answer.json()["errors"] == {"key_column": [KEYED_BY_SKU]}


def test_an_export_puts_the_key_its_records_are_keyed_by_first(alice, csv_server):
    # Given a dataset whose import was deleted after it loaded it
    imp = loaded(alice, csv_server)
    assert client_for(alice).delete(f"{API}/imports/{imp.pk}/").status_code == 204

    response = client_for(alice).get(f"{API}/datasets/products/export")

    header = b"".join(response.streaming_content).decode().splitlines()[0]
    assert header == "sku,id,name"
