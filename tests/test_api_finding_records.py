"""Records: one by its key, some by a field's value, and the whole dataset as CSV (streamed)."""

import csv
import io

import pytest
from django.db import connection

from schedules.models import Record
from tests.api_support import API, SOURCE, client_for
from tests.factories import make_import
from tests.importer_support import run_now

pytestmark = pytest.mark.django_db


@pytest.fixture
def products(alice):
    imp = make_import(alice, SOURCE)
    rows = [
        {"sku": "SKU-00010", "city": "Berlin", "price": 10.5, "in_stock": True},
        {"sku": "SKU-00011", "city": "Paris", "price": 3, "in_stock": False},
        {"sku": "SKU-00012", "city": "Berlin", "price": 7, "in_stock": None, "note": "a, b"},
    ]
    Record.objects.bulk_create(
        Record(dataset=imp.dataset, key=row["sku"], data=row, content_hash=i)
        for i, row in enumerate(rows)
    )
    return imp


def keys(response) -> list[str]:
    assert response.status_code == 200, response.content
    return [record["key"] for record in response.json()["results"]]


def test_one_record_is_found_by_its_exact_key(alice, products):
    client = client_for(alice)

    assert keys(client.get(f"{API}/datasets/products/records/", {"key": "SKU-00010"})) == [
        "SKU-00010"
    ]
    assert keys(client.get(f"{API}/datasets/products/records/", {"key": "SKU-0001"})) == []


def test_records_are_filtered_by_field_values_all_of_which_must_hold(alice, products):
    client = client_for(alice)
    url = f"{API}/datasets/products/records/"

    in_berlin = client.get(url, {"field": "city:Berlin"})
    cheap_in_berlin = client.get(url, {"field": ["city:Berlin", "price:7"]})
    by_number = client.get(url, {"field": "price:10.5"})

    assert keys(in_berlin) == ["SKU-00010", "SKU-00012"]
    assert keys(cheap_in_berlin) == ["SKU-00012"]
    assert keys(by_number) == ["SKU-00010"]


def test_a_field_filter_without_a_value_is_a_400_showing_the_form(alice, products):
    response = client_for(alice).get(f"{API}/datasets/products/records/", {"field": "city"})

    assert response.status_code == 400
    assert response.json()["errors"] == {"field": ["'city' is not name:value (e.g. city:Berlin)"]}


def test_a_null_character_in_any_field_filter_is_a_400_on_the_list_and_the_export(alice, products):
    # Only the last value was checked: an earlier one reached PostgreSQL (a 500), and the
    # export answered 200 with a CSV cut short
    client = client_for(alice)
    asked = {"field": ["city:\x00", "city:Berlin"]}

    listed = client.get(f"{API}/datasets/products/records/", asked)
    exported = client.get(f"{API}/datasets/products/export", asked, HTTP_ACCEPT="text/csv")

    for response in (listed, exported):
        assert response.status_code == 400, response.content
        assert response.json()["errors"] == {"field": ["Null characters are not allowed."]}


def test_a_dataset_exports_as_csv_key_column_first(alice, products):
    # When alice exports her dataset
    response = client_for(alice).get(f"{API}/datasets/products/export")

    # Then it streams as CSV: the key column first, every field of every record, JSON's words
    assert response.status_code == 200
    assert response.streaming
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert 'filename="products.csv"' in response["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows == [
        ["sku", "city", "in_stock", "note", "price"],
        ["SKU-00010", "Berlin", "true", "", "10.5"],
        ["SKU-00011", "Paris", "false", "", "3"],
        ["SKU-00012", "Berlin", "", "a, b", "7"],
    ]


def test_an_export_takes_the_records_filters(alice, products):
    response = client_for(alice).get(
        f"{API}/datasets/products/export", {"field": "city:Paris"}, HTTP_ACCEPT="text/csv"
    )

    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [row[0] for row in rows] == ["sku", "SKU-00011"]


def test_an_export_of_an_unknown_dataset_is_a_json_404(alice):
    response = client_for(alice).get(f"{API}/datasets/nothing/export", HTTP_ACCEPT="text/csv")

    assert response.status_code == 404
    assert response.json() == {"detail": "dataset 'nothing' not found"}


def test_an_exports_header_has_every_field_of_every_record(alice):
    # Given a dataset whose files changed their columns over time: most records of one file,
    # a few of older ones, one holding a name no other has, one holding none
    imp = make_import(alice, SOURCE)
    shapes = [{"sku": 0, "a": 1, "b": 2}] * 50 + [
        {"sku": 0, "a": 1},
        {"sku": 0, "c": 3, "a": 1},
        {"sku": 0, "b": 2, 'odd name, with "quotes"': 4},
        {},
    ]
    shapes = shapes[25:] + shapes[:25]
    Record.objects.bulk_create(
        Record(dataset=imp.dataset, key=f"k{i:03}", data=shape, content_hash=i)
        for i, shape in enumerate(shapes)
    )

    # When alice exports it
    response = client_for(alice).get(f"{API}/datasets/products/export")

    # Then the header names every field any record holds, once, the key column first
    header = next(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert header == ["sku", "a", "b", "c", 'odd name, with "quotes"']


def test_an_export_of_a_dataset_without_records_is_an_empty_header(alice):
    make_import(alice, SOURCE)

    response = client_for(alice).get(f"{API}/datasets/products/export")

    assert b"".join(response.streaming_content) == b"\r\n"


@pytest.mark.django_db(transaction=True)
def test_an_export_streams_its_records_from_one_snapshot(alice):
    """Outside a transaction Django declared the export's cursor WITH HOLD, and PostgreSQL
    computed the whole result before its first record (four million records: the web worker
    was killed before its first line)."""
    # Given a dataset with records
    imp = make_import(alice, SOURCE)
    Record.objects.bulk_create(
        Record(dataset=imp.dataset, key=f"k{i:04}", data={"sku": f"k{i:04}"}, content_hash=i)
        for i in range(2500)
    )

    # When its export has sent its header and first lines
    response = client_for(alice).get(f"{API}/datasets/products/export")
    chunks = iter(response.streaming_content)
    header, first = next(chunks), next(chunks)
    with connection.cursor() as cursor:
        cursor.execute("SELECT is_holdable FROM pg_cursors")
        cursors = cursor.fetchall()
        cursor.execute("SHOW transaction_isolation")
        isolation = cursor.fetchone()[0]

    # Then its records come from a cursor that streams, in one repeatable-read snapshot
    assert cursors == [(False,)] and isolation == "repeatable read"
    rest = b"".join(chunks)
    assert header == b"sku\r\n" and first.count(b"\n") == 1000
    assert (first + rest).count(b"\n") == 2500


def test_a_key_is_found_as_given_or_as_the_importer_trims_it(alice):
    """Regressions: the key filter stripped its value of Python's whitespace, so `?key=%0BA-1`
    found `A-1`; not stripped at all, `?key=%20A-1%20` as the file spells it found nothing,
    the importer keeping every key trimmed of spaces, tabs and line ends (review)."""
    imp = make_import(alice, SOURCE)
    Record.objects.bulk_create(
        Record(dataset=imp.dataset, key=key, data={"sku": key}, content_hash=i)
        # as an import keeps them, and one kept untrimmed by code of its own
        for i, key in enumerate(["A-1", " B-2"])
    )
    client = client_for(alice)
    url = f"{API}/datasets/products/records/"

    assert keys(client.get(url, {"key": " A-1 "})) == ["A-1"]
    assert keys(client.get(url, {"key": "\tA-1\r\n"})) == ["A-1"]
    assert keys(client.get(url, {"key": "A-1"})) == ["A-1"]
    assert keys(client.get(url, {"key": "\x0bA-1"})) == []
    assert keys(client.get(url, {"key": " B-2"})) == [" B-2"]


def test_a_key_looked_up_as_the_file_spells_it_finds_the_record_the_file_made(alice, csv_server):
    # Given a file whose key column is padded with spaces, imported
    imp = make_import(alice, csv_server.serve("/p.csv", b"sku,name\n A-1 ,Widget\n"))
    assert run_now(imp).status == "succeeded"

    api = client_for(alice)
    url = f"{API}/datasets/{imp.dataset.name}/records/"
    trimmed = api.get(url, {"key": "A-1"})
    assert [record["key"] for record in trimmed.json()["results"]] == ["A-1"], trimmed.content

    # When the record is looked up by its key as the file spells it
    answer = api.get(url, {"key": " A-1 "})

    # Then the record the file made is found
    assert answer.status_code == 200, answer.content
    found = [record["key"] for record in answer.json()["results"]]
    assert found == ["A-1"], found
