"""A row whose fields differ only in where a unit separator (U+001F) falls is a changed row
(engine hunt).

The row's hash joined its fields by U+001F unescaped, so `x<US>y`,`z` and `x`,`y<US>z` hashed
alike: the run said `rows_unchanged: 1` and the record kept the old values for good. The
fields are now escaped (U+001D doubled, U+001F as U+001D 'u'); a field without either
character hashes as before, so the hashes records already keep stay valid.
"""

import pytest
from django.db import connection
from psycopg import sql

from schedules.models import Record
from tests.factories import make_import
from tests.importer_support import (  # noqa: F401
    both_paths,
    records,
    run_now,
    staging_path,
)

pytestmark = pytest.mark.django_db


@both_paths
@pytest.mark.parametrize(
    "before, after",
    [
        ("A-1,x\x1fy,z", "A-1,x,y\x1fz"),
        ("A-1,x\x1d,u", "A-1,x\x1du,"),  # the escape character itself moved
        ("A-1,x\x1d\x1fy,z", "A-1,x\x1d,y\x1fz"),
    ],
    ids=["unit-separator", "escape-character", "both"],
)
def test_moving_a_separator_between_two_fields_is_a_change(alice, csv_server, before, after):
    # Given a record whose fields hold the character that joins them, or its escape
    imp = make_import(alice, csv_server.serve("/p.csv", f"sku,a,b\n{before}\n"))
    assert run_now(imp).status == "succeeded"
    # When the next file moves it into the other field
    csv_server.serve("/p.csv", f"sku,a,b\n{after}\n")

    run = run_now(imp)

    # Then the record is updated to the new values
    _, a, b = after.split(",")
    assert (run.rows_updated, run.rows_unchanged) == (1, 0)
    assert records(imp)["A-1"] == {"sku": "A-1", "a": a, "b": b}


def _hash_texts(*fields: str) -> tuple[str, str]:
    """The text the row's hash reads for these fields, and the fields joined as before."""
    from tasks.engine.stage import hashed_field, joined_in_pairs

    escaped = joined_in_pairs([hashed_field(sql.Literal(f)) for f in fields])
    plain = sql.SQL(" || chr(31) || ").join(sql.Literal(f) for f in fields)
    with connection.cursor() as cursor:
        cursor.execute(sql.SQL("SELECT {}, {}").format(escaped, plain).as_string(cursor.connection))
        return cursor.fetchone()


def test_a_row_without_either_character_hashes_as_before():
    escaped, plain = _hash_texts("A-1", "Anvil, large", "", "ünïcödé \t")
    assert escaped == plain


@both_paths
def test_a_record_stored_before_is_unchanged_by_the_same_row(alice, csv_server):
    # Given a record whose stored hash was made by the former formula (fields joined as they
    # are), as every record stored before this change has it
    imp = make_import(alice, csv_server.serve("/p.csv", "sku,a\nA-1,Anvil\n"))
    run_now(imp)
    record = Record.objects.get(key="A-1")
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT hashtextextended(%s || chr(30) || %s || chr(31) || %s, 0)",
            [_signature(imp), "A-1", "Anvil"],
        )
        former = cursor.fetchone()[0]
    assert record.content_hash == former

    # When the same row comes again, it is unchanged: nothing is rewritten
    csv_server.serve("/p.csv", "sku,a\nA-1,Anvil\r\n")
    run = run_now(imp)
    assert (run.rows_updated, run.rows_unchanged) == (0, 1)


def _signature(imp) -> str:
    from tasks.engine.first_record import Layout

    return Layout(names=["sku", "a"], key_index=0, key_column="sku").signature


def test_the_fast_path_hands_such_a_file_to_the_python_path_which_hashes_it_alike(
    alice, csv_server, caplog
):
    # Given a file whose second row holds a unit separator (the fast path's table hashes
    # fields joined as they are, so it must not stage it)
    body = "sku,a\nA-1,plain\nB-2,x\x1fy\n"
    imp = make_import(alice, csv_server.serve("/p.csv", body))

    with caplog.at_level("INFO", logger="importbeat.importer"):
        run = run_now(imp)

    # Then the Python path reads it, and its rows land
    assert "parsing in Python: COPY rejected the file (a unit separator" in caplog.text
    assert (run.status, run.rows_inserted) == ("succeeded", 2)
    assert records(imp)["B-2"] == {"sku": "B-2", "a": "x\x1fy"}

    # And when the file loses that row, the fast path reads it and A-1 is unchanged
    caplog.clear()
    csv_server.serve("/p.csv", "sku,a\nA-1,plain\n")
    with caplog.at_level("INFO", logger="importbeat.importer"):
        again = run_now(imp)
    assert "parsing in Python" not in caplog.text
    assert (again.rows_updated, again.rows_unchanged) == (0, 1)
