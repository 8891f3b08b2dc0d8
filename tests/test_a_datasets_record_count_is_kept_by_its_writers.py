"""A dataset's count of its records is kept by every writer of records, and read, not counted.

`GET /datasets/` counted every record of every listed dataset at each request (1.2 s with two
million records), `GET /datasets/{name}/` those of one (0.6 s), and every page of records
counted the whole dataset again for its `count`. The count is now `Dataset.record_count`,
written by the merge that inserts and deletes records and by a deletion by hand, in their
transactions; the reads take it as it is.
"""

import io

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from schedules import services
from schedules.models import Dataset, Record
from tests.api_support import API, client_for
from tests.factories import PRODUCTS_CSV, make_import
from tests.importer_support import records, run_now
from tests.saved_runs_support import run_data_migration

pytestmark = pytest.mark.django_db

HEADER = "sku,name,price\n"


def counted(dataset: Dataset) -> tuple[int, int]:
    """(the kept count, the records there are)."""
    dataset.refresh_from_db()
    return dataset.record_count, Record.objects.filter(dataset=dataset).count()


def test_the_count_follows_every_merge_and_deletion(alice, csv_server):
    # A first load of three rows
    url = csv_server.serve("/p.csv", HEADER + "A-1,Anvil,1\nB-2,Bucket,2\nC-3,Crate,3\n")
    imp = make_import(alice, url, mode="sync")
    assert run_now(imp).status == "succeeded"
    assert counted(imp.dataset) == (3, 3)

    # A re-load: one row changed, one gone (mode sync deletes it), two new
    csv_server.serve("/p.csv", HEADER + "A-1,Anvil,9\nC-3,Crate,3\nD-4,Drum,4\nE-5,Easel,5\n")
    run = run_now(imp)
    assert (run.rows_updated, run.rows_deleted, run.rows_inserted) == (1, 1, 2)
    assert counted(imp.dataset) == (4, 4)

    # The same file again: nothing written, nothing counted twice
    assert run_now(imp).rows_inserted == 0
    assert counted(imp.dataset) == (4, 4)

    # A second import into the same dataset, upserting a row of its own (beside the first, no
    # longer sync: a sync import is its dataset's one writer)
    services.update_import(imp, mode="upsert")
    other = make_import(
        alice, csv_server.serve("/o.csv", HEADER + "F-6,Fan,6\n"), name="other", mode="upsert"
    )
    assert run_now(other).rows_inserted == 1
    assert counted(imp.dataset) == (5, 5)

    # Records deleted by hand (the admin)
    services.delete_records(Record.objects.filter(dataset=imp.dataset, key__in=["A-1", "F-6"]))
    assert counted(imp.dataset) == (3, 3)


def test_a_failed_merge_counts_nothing(alice, csv_server):
    url = csv_server.serve("/p.csv", HEADER + "A-1,Anvil,1\n")
    imp = make_import(alice, url)
    run_now(imp)
    # A file whose rows all fail (no key) lands nothing
    csv_server.serve("/p.csv", HEADER + ",Nameless,1\n")

    run_now(imp)

    assert counted(imp.dataset) == (1, 1)


def test_the_reads_take_the_count_without_counting(alice, csv_server):
    url = csv_server.serve("/p.csv", HEADER + "A-1,Anvil,1\nB-2,Bucket,2\nC-3,Crate,3\n")
    imp = make_import(alice, url)
    run_now(imp)
    client = client_for(alice)

    with CaptureQueriesContext(connection) as reads:
        listed = client.get(f"{API}/datasets/").json()["results"][0]
        one = client.get(f"{API}/datasets/products/").json()
        page = client.get(f"{API}/datasets/products/records/", {"page_size": 2}).json()

    assert listed["record_count"] == one["record_count"] == page["count"] == 3
    record_counts = [
        q["sql"]
        for q in reads.captured_queries
        if "COUNT(" in q["sql"].upper() and "record" in q["sql"]
    ]
    assert not record_counts


def test_a_filtered_page_counts_what_it_shows(alice, csv_server):
    url = csv_server.serve("/p.csv", HEADER + "A-1,Anvil,1\nB-2,Bucket,2\nC-3,Crate,3\n")
    run_now(make_import(alice, url))

    page = client_for(alice).get(f"{API}/datasets/products/records/", {"field": "price:2"})

    assert page.json()["count"] == 1 and page.json()["results"][0]["key"] == "B-2"


@pytest.mark.django_db(transaction=True)  # the rows committed, as a migration finds them
def test_the_migration_counts_the_records_already_there(alice, csv_server):
    url = csv_server.serve("/p.csv", HEADER + "A-1,Anvil,1\nB-2,Bucket,2\n")
    imp = make_import(alice, url)
    run_now(imp)
    empty = Dataset.objects.create(owner=alice, name="empty")

    run_data_migration("schedules", "0024_dataset_record_count")

    assert counted(imp.dataset) == (2, 2) and counted(empty) == (0, 0)


def test_a_count_records_changed_behind_its_writers_is_corrected_by_a_command(alice):
    # Given two datasets, one whose records someone deleted by SQL (the count kept says 3)
    right = make_import(alice, "https://example.com/a.csv", name="a", dataset="right").dataset
    wrong = make_import(alice, "https://example.com/b.csv", name="b", dataset="wrong").dataset
    for dataset in (right, wrong):
        Record.objects.bulk_create(
            Record(dataset=dataset, key=key, data={"sku": key}, content_hash=0) for key in "ABC"
        )
    services.recount_records([right.pk, wrong.pk])
    with connection.cursor() as cursor:
        cursor.execute(
            "DELETE FROM schedules_record WHERE dataset_id = %s AND key <> 'A'", [wrong.pk]
        )

    # When the operator counts again
    out = io.StringIO()
    call_command("recount_records", stdout=out)

    # Then the wrong count is corrected and said, the right one left alone
    assert counted(wrong) == (1, 1) and counted(right) == (3, 3)
    assert out.getvalue().splitlines() == [
        f"dataset {wrong.pk} (alice/wrong): 3 -> 1 records",
        "2 datasets counted, 1 corrected; the next import of each reads its file whole",
    ]


def test_a_record_deleted_by_hand_comes_back_at_the_next_import_of_the_same_file(alice, csv_server):
    # Given an import whose file landed, and a record an operator then deleted by SQL
    imp = make_import(alice, csv_server.serve("/p.csv", PRODUCTS_CSV))
    assert run_now(imp).rows_inserted == 3
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM schedules_record WHERE key = 'A-1'")

    # When the operator counts its records again, as the README asks, and the same file comes
    call_command("recount_records", stdout=io.StringIO())
    run = run_now(imp)

    # Then the file is merged again, not skipped as the one applied last: the record is back
    assert (run.rows_inserted, run.rows_unchanged) == (1, 2), run.error_message
    assert sorted(records(imp)) == ["A-1", "B-2", "C-3"]
    assert counted(imp.dataset) == (3, 3)


def test_the_recount_command_names_a_dataset_that_is_not_there(alice):
    with pytest.raises(CommandError, match="no dataset 999999"):
        call_command("recount_records", "999999")
