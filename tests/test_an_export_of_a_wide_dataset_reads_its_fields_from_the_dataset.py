"""An export's header reads the field names its dataset keeps, not every record of it.

The header (every field any record holds) was read by a scan of every record of the dataset:
60,000 records of 60 text fields (stored compressed) took 1.45 s, about 24 µs a record, so a
dataset of a million or two such records could never be exported: the scan outlasted the web's
statement limit and the export answered 503 every time. The names are now kept on the dataset
(`Dataset.fields`) by every writer of records, in the transaction that writes them; unknown
(NULL: datasets from before migration 0044) they are read by that scan once, and kept.
"""

from __future__ import annotations

import threading

import pytest
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext

from schedules import services
from schedules.models import Dataset, Record
from tests.api_support import API, client_for
from tests.factories import make_import
from tests.importer_support import on_a_thread, run_now

pytestmark = pytest.mark.django_db

HEADER = "sku,name,price\n"
ROWS = "A-1,Anvil,1\nB-2,Bucket,2\n"


def exported(user, name: str = "products") -> list[str]:
    response = client_for(user).get(f"{API}/datasets/{name}/export")
    assert response.status_code == 200, response
    return b"".join(response.streaming_content).decode().splitlines()


def scans_of_records_for_names(queries: list[dict]) -> list[str]:
    return [q["sql"] for q in queries if "jsonb_object_keys" in q["sql"]]


def kept(dataset: Dataset) -> list[str] | None:
    dataset.refresh_from_db()
    return dataset.fields


def forget_fields(dataset: Dataset) -> None:
    """As migration 0044 leaves every dataset that was there: its names unknown."""
    Dataset.objects.filter(pk=dataset.pk).update(fields=None)


def test_the_header_comes_from_the_names_the_imports_kept_without_reading_records(
    alice, csv_server
):
    # Given a dataset an import loaded
    imp = make_import(alice, csv_server.serve("/p.csv", HEADER + ROWS))
    assert run_now(imp).status == "succeeded"

    # When alice exports it
    with CaptureQueriesContext(connection) as queries:
        lines = exported(alice)

    # Then the header is the names the import kept, the key column first, and no record was
    # read for them (the scan of every record the old header ran, twice, at every export)
    assert lines == ["sku,name,price", "A-1,Anvil,1", "B-2,Bucket,2"]
    assert scans_of_records_for_names(queries.captured_queries) == []
    assert kept(imp.dataset) == ["name", "price", "sku"]


def test_a_column_a_later_file_adds_joins_the_kept_names_and_the_header(alice, csv_server):
    # Given a dataset loaded from a file of three columns
    url = csv_server.serve("/p.csv", HEADER + ROWS)
    imp = make_import(alice, url)
    run_now(imp)

    # When a later file (upserted) brings a fourth column, for one row only
    csv_server.serve("/p.csv", "sku,name,price,colour\nC-3,Crate,3,red\n")
    assert run_now(imp).rows_inserted == 1

    # Then the dataset keeps the four names, and the export shows the new column, empty where
    # the records of the first file do not hold it
    assert kept(imp.dataset) == ["colour", "name", "price", "sku"]
    assert exported(alice) == [
        "sku,colour,name,price",
        "A-1,,Anvil,1",
        "B-2,,Bucket,2",
        "C-3,red,Crate,3",
    ]


def test_a_sync_of_a_whole_file_keeps_exactly_its_columns(alice, csv_server):
    # Given a sync import whose first file had a column the next one drops
    url = csv_server.serve("/p.csv", "sku,name,price,colour\nA-1,Anvil,1,red\n")
    imp = make_import(alice, url, mode="sync")
    run_now(imp)

    # When the next file, every row of it landed, has no such column
    csv_server.serve("/p.csv", HEADER + ROWS)
    assert run_now(imp).status == "succeeded"

    # Then the dataset's names are the file's, and so is the export's header
    assert kept(imp.dataset) == ["name", "price", "sku"]
    assert exported(alice)[0] == "sku,name,price"


def test_a_sync_whose_file_has_a_failed_row_keeps_the_names_of_the_record_it_left(
    alice, csv_server
):
    # Given a sync import of typed prices whose first file had a column the next one drops
    columns = [{"name": "price", "type": "int"}]
    url = csv_server.serve("/p.csv", "sku,name,price,colour\nA-1,Anvil,1,red\n")
    imp = make_import(alice, url, mode="sync", columns=columns)
    run_now(imp)

    # When the next file's row of A-1 fails (its record stays as it was, colour and all)
    csv_server.serve("/p.csv", HEADER + "A-1,Anvil,one\nB-2,Bucket,2\n")
    assert run_now(imp).status == "partial"

    # Then the column the remaining record holds is still named
    assert kept(imp.dataset) == ["colour", "name", "price", "sku"]
    assert exported(alice)[1] == "A-1,red,Anvil,1"


def test_unknown_names_are_read_from_the_records_once_and_kept(alice, csv_server):
    # Given a dataset whose names are unknown (as the migration leaves the datasets there)
    imp = make_import(alice, csv_server.serve("/p.csv", HEADER + ROWS))
    run_now(imp)
    forget_fields(imp.dataset)

    # When alice exports it twice
    with CaptureQueriesContext(connection) as first:
        first_lines = exported(alice)
    with CaptureQueriesContext(connection) as second:
        second_lines = exported(alice)

    # Then the first export read them from the records, once, and kept them; the second did not
    assert first_lines == second_lines == ["sku,name,price", "A-1,Anvil,1", "B-2,Bucket,2"]
    assert len(scans_of_records_for_names(first.captured_queries)) == 2  # (one record, the rest)
    assert kept(imp.dataset) == ["name", "price", "sku"]
    assert scans_of_records_for_names(second.captured_queries) == []


def test_an_upsert_into_a_dataset_of_unknown_names_leaves_them_unknown(alice, csv_server):
    # Given a dataset of unknown names
    url = csv_server.serve("/p.csv", HEADER + ROWS)
    imp = make_import(alice, url)
    run_now(imp)
    forget_fields(imp.dataset)

    # When an upsert brings a new column for one row (the others may hold any names)
    csv_server.serve("/p.csv", "sku,colour\nC-3,red\n")
    run_now(imp)

    # Then the names stay unknown, and the export reads every one of them from the records
    assert kept(imp.dataset) is None
    assert exported(alice)[0] == "sku,colour,name,price"


def test_records_deleted_by_hand_leave_their_names_kept_and_their_column_empty(alice, csv_server):
    # Given a dataset where only one record holds a column
    url = csv_server.serve("/p.csv", HEADER + ROWS)
    imp = make_import(alice, url)
    run_now(imp)
    csv_server.serve("/p.csv", "sku,colour\nC-3,red\n")
    run_now(imp)

    # When that record is deleted by hand (the admin)
    services.delete_records(Record.objects.filter(dataset=imp.dataset, key="C-3"))

    # Then its column is still named (empty), rather than every record read again
    assert kept(imp.dataset) == ["colour", "name", "price", "sku"]
    assert exported(alice) == ["sku,colour,name,price", "A-1,,Anvil,1", "B-2,,Bucket,2"]


def test_a_recount_reads_the_names_again_exactly(alice, csv_server):
    # Given a dataset whose records were changed behind its writers' backs (SQL)
    imp = make_import(alice, csv_server.serve("/p.csv", HEADER + ROWS))
    run_now(imp)
    Record.objects.filter(dataset=imp.dataset, key="A-1").update(data={"sku": "A-1", "size": "L"})
    Record.objects.filter(dataset=imp.dataset, key="B-2").update(data={"sku": "B-2", "size": "M"})

    # When the operator counts its records again (manage.py recount_records)
    services.recount_records([imp.dataset_id])

    # Then its names are the records' own
    assert kept(imp.dataset) == ["size", "sku"]


@pytest.mark.django_db(transaction=True)  # a merge commits from another connection
def test_names_read_while_a_merge_commits_a_new_column_are_not_kept(alice, csv_server, monkeypatch):
    # Given a dataset of unknown names, and a merge that commits a new column just after an
    # export's read of the names took its snapshot
    url = csv_server.serve("/p.csv", HEADER + ROWS)
    imp = make_import(alice, url)
    run_now(imp)
    forget_fields(imp.dataset)
    csv_server.serve("/p.csv", "sku,colour\nC-3,red\n")
    read_fields = services.read_fields

    def a_merge_commits_meanwhile(dataset_id: int) -> list[str]:
        names = read_fields(dataset_id)
        thread, _ = on_a_thread(lambda: run_now(imp))
        thread.join()
        return names

    monkeypatch.setattr(services, "read_fields", a_merge_commits_meanwhile)

    # When that read ends
    read = services.known_fields(imp.dataset_id)

    # Then the names it read (without the merge's) are not kept: they stay unknown, and the
    # next read finds the new column
    assert read == ["name", "price", "sku"]
    assert kept(imp.dataset) is None
    monkeypatch.setattr(services, "read_fields", read_fields)
    assert services.known_fields(imp.dataset_id) == ["colour", "name", "price", "sku"]
    assert kept(imp.dataset) == ["colour", "name", "price", "sku"]


@pytest.mark.django_db(transaction=True)  # a writer holds the dataset from another connection
def test_names_read_while_a_writer_holds_the_dataset_are_not_kept_nor_waited_for(alice, csv_server):
    # Given a dataset of unknown names whose row a writer holds (a merge in progress)
    imp = make_import(alice, csv_server.serve("/p.csv", HEADER + ROWS))
    run_now(imp)
    forget_fields(imp.dataset)
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        other = connections.create_connection("default")
        try:
            with other.cursor() as cursor:
                cursor.execute("BEGIN")
                cursor.execute(
                    "SELECT 1 FROM schedules_dataset WHERE id = %s FOR NO KEY UPDATE",
                    [imp.dataset_id],
                )
                held.set()
                release.wait(30)
                cursor.execute("ROLLBACK")
        finally:
            other.close()

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    assert held.wait(30)

    # When an export reads the names
    try:
        read = services.known_fields(imp.dataset_id)
    finally:
        release.set()
        thread.join()

    # Then it has them at once, and keeps them the next time
    assert read == ["name", "price", "sku"]
    assert kept(imp.dataset) is None
    services.known_fields(imp.dataset_id)
    assert kept(imp.dataset) == ["name", "price", "sku"]
