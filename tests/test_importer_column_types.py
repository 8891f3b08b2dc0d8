"""The optional columns spec: values are typed in the stored row; misfits are bad rows."""

from decimal import Decimal

import pytest

from tests.api_support import API, client_for
from tests.factories import make_import
from tests.importer_support import (  # noqa: F401
    both_paths,
    records,
    row_errors,
    run_now,
    staging_path,
)

pytestmark = pytest.mark.django_db

COLUMNS = [
    {"name": "sku", "type": "text", "required": True},
    {"name": "qty", "type": "int"},
    {"name": "price", "type": "decimal", "required": True},
    {"name": "active", "type": "bool"},
    {"name": "since", "type": "date"},
    {"name": "seen", "type": "datetime"},
]
HEADER = "sku,qty,price,active,since,seen,note\n"


@both_paths
def test_valid_values_are_stored_with_their_json_types(alice, csv_server):
    body = HEADER + (
        "A-1, 42 ,10.50,yes,2024-02-29,2024-03-01T12:30:00,hello\n"
        "B-2,,0.1,False,,2024-03-01 12:30:00+02:00,\n"
    )
    imp = make_import(alice, csv_server.serve("/p.csv", body), columns=COLUMNS)

    run = run_now(imp)

    assert run.status == "succeeded", run.error_details
    assert records(imp) == {
        "A-1": {
            "sku": "A-1", "qty": 42, "price": 10.5, "active": True, "since": "2024-02-29",
            "seen": "2024-03-01T12:30:00", "note": "hello",
        },
        "B-2": {
            "sku": "B-2", "qty": None, "price": Decimal("0.1"), "active": False, "since": None,
            "seen": "2024-03-01T10:30:00+00:00", "note": "",
        },
    }  # fmt: skip


@both_paths
def test_a_datetime_without_an_offset_is_kept_as_given_a_date_alone_too(alice, csv_server):
    # `2024-01-15` ends with `-15`, which was taken for an offset: the value was stored in UTC
    body = HEADER + "A-1,,1,,,2024-01-15,\nB-2,,1,,,2024-01-15T00:00:00,\nC-3,,1,,,2024-01-15Z,\n"
    imp = make_import(alice, csv_server.serve("/p.csv", body), columns=COLUMNS)

    run_now(imp)

    seen = {key: row["seen"] for key, row in records(imp).items()}
    assert seen == {
        "A-1": "2024-01-15T00:00:00",
        "B-2": "2024-01-15T00:00:00",
        "C-3": "2024-01-15T00:00:00+00:00",
    }


@pytest.mark.parametrize(
    ("row", "column", "reason"),
    [
        ("A-1,4.5,1,true,,,", "qty", "not a valid int: expected a whole number"),
        (
            "A-1,1,ten,true,,,",
            "price",
            "not a valid decimal: expected a decimal number within ±1e308",
        ),
        (
            "A-1,1,NaN,true,,,",
            "price",
            "not a valid decimal: expected a decimal number within ±1e308",
        ),
        ("A-1,1,,true,,,", "price", "a required value is missing"),
        ("A-1,1,1,maybe,,,", "active", "not a valid bool: expected true/false, yes/no, 1/0"),
        ("A-1,1,1,true,2023-02-29,,", "since", "not a valid date: expected YYYY-MM-DD"),
        ("A-1,1,1,true,03/04/2024,,", "since", "not a valid date: expected YYYY-MM-DD"),
        ("A-1,1,1,true,,yesterday,", "seen", "not a valid datetime: expected ISO 8601"),
        # PostgreSQL 16 reads these as numbers (31, 1000, 16), 14 and 15 refuse them
        ("A-1,0x1F,1,true,,,", "qty", "not a valid int: expected a whole number"),
        ("A-1,1_000,1,true,,,", "qty", "not a valid int: expected a whole number"),
        (
            "A-1,1,0x10,true,,,",
            "price",
            "not a valid decimal: expected a decimal number within ±1e308",
        ),
        # past what the API's JSON numbers hold: served as Infinity (a 500) or as 0
        (
            "A-1,1,1e400,true,,,",
            "price",
            "not a valid decimal: expected a decimal number within ±1e308",
        ),
        (
            "A-1,1,-1e-400,true,,,",
            "price",
            "not a valid decimal: expected a decimal number within ±1e308",
        ),
    ],
)
def test_a_value_that_does_not_fit_its_column_is_a_bad_row(alice, csv_server, row, column, reason):
    # Given one good row and one with a misfit value on line 3
    body = HEADER + "Z-9,1,1,true,,,\n" + row + "\n"
    imp = make_import(alice, csv_server.serve("/p.csv", body), columns=COLUMNS)

    run = run_now(imp)

    assert run.status == "partial"
    assert run.rows_failed == 1
    [(line, bad_column, bad_reason)] = row_errors(run)
    assert (line, bad_column) == (3, column)
    assert bad_reason.startswith(reason)
    assert (
        run.error_details["rows"][0]["value"]
        == row.split(",")[[c["name"] for c in COLUMNS].index(column)]
    )
    assert list(records(imp)) == ["Z-9"]


def test_a_required_column_absent_from_the_file_fails_the_run(alice, csv_server):
    imp = make_import(alice, csv_server.serve("/p.csv", "sku,qty\nA-1,1\n"), columns=COLUMNS)

    run = run_now(imp)

    assert run.status == "failed"
    assert "'price'" in run.error_message


def test_a_decimal_is_served_and_exported_with_every_digit_it_holds(alice, csv_server):
    # Read as a float, 12345678901234567890.12 was served as 1.2345678901234567e+19; as a
    # Decimal, a satoshi 0.00000001 as 1E-8
    body = "sku,price\nA-1,12345678901234567890.12\nB-2,0.10\nC-3,0.00000001\n"
    columns = [{"name": "price", "type": "decimal"}]
    imp = make_import(alice, csv_server.serve("/p.csv", body), columns=columns)
    run_now(imp)
    client = client_for(alice)

    served = client.get(f"{API}/datasets/products/records/").content.decode()
    export = client.get(f"{API}/datasets/products/export")
    exported = b"".join(export.streaming_content).decode()

    assert '"price":12345678901234567890.12' in served and '"price":0.10' in served
    assert "A-1,12345678901234567890.12" in exported and "B-2,0.10" in exported
    assert '"price":0.00000001' in served and "C-3,0.00000001" in exported
