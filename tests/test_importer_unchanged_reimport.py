"""Re-importing an unchanged file writes nothing: no row version, no timestamp, no run id.

The dataset is marked changed before each re-import here, so the file goes through the whole
merge (the anti-join on content hashes) rather than being recognised by its digest; that
shortcut has its own tests in test_importer_same_file_again.py.
"""

import pytest
from django.db import connection

from schedules.models import Record
from schedules.services import mark_datasets_changed
from tasks.engine import stage_copy
from tests.factories import make_import
from tests.importer_support import (  # noqa: F401
    both_paths,
    run_now,
    staging_path,
)

pytestmark = pytest.mark.django_db

BODY = 'sku,name,notes\nA-1,Anvil,\nB-2,"Bucket, blue","two\nlines"\nC-3,Crate,x\n'


def row_versions(imp) -> dict[str, tuple]:
    """Each record's xmin (the transaction that last wrote it), updated_at and last run."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT key, xmin::text, updated_at, last_changed_run_id FROM schedules_record"
            " WHERE dataset_id = %s",
            [imp.dataset_id],
        )
        return {key: rest for key, *rest in cursor.fetchall()}


@both_paths
def test_reimporting_an_unchanged_file_writes_nothing(alice, csv_server):
    # Given a file imported once
    imp = make_import(alice, csv_server.serve("/p.csv", BODY))
    run_now(imp)
    before = row_versions(imp)
    mark_datasets_changed([imp.dataset_id])

    # When the same file is imported again
    run = run_now(imp)

    # Then every row counts as unchanged and no record was rewritten
    assert (run.rows_inserted, run.rows_updated, run.rows_unchanged) == (0, 0, 3)
    assert row_versions(imp) == before


def test_the_two_staging_paths_agree_so_switching_path_writes_nothing(
    alice, csv_server, monkeypatch
):
    # Given a file loaded by the COPY path
    imp = make_import(alice, csv_server.serve("/p.csv", BODY))
    run_now(imp)
    before = row_versions(imp)
    hashes = dict(Record.objects.values_list("key", "content_hash"))
    mark_datasets_changed([imp.dataset_id])

    # When the same file goes through the Python path (as a file with one bad row would)
    monkeypatch.setattr(stage_copy, "fast_path_refusal", lambda imp, first: "forced")
    run = run_now(imp)

    # Then both paths hashed every row alike: nothing was rewritten
    assert run.rows_unchanged == 3
    assert row_versions(imp) == before
    assert dict(Record.objects.values_list("key", "content_hash")) == hashes


@both_paths
def test_only_the_changed_row_is_rewritten(alice, csv_server):
    imp = make_import(alice, csv_server.serve("/p.csv", BODY))
    first = run_now(imp)
    before = row_versions(imp)
    csv_server.serve("/p.csv", BODY.replace("Crate,x", "Crate,y"))

    run = run_now(imp)

    after = row_versions(imp)
    assert (run.rows_updated, run.rows_unchanged) == (1, 2)
    assert after["A-1"] == before["A-1"] and after["B-2"] == before["B-2"]
    assert after["C-3"][2] == run.pk != first.pk
    assert Record.objects.get(key="C-3").first_seen_run_id == first.pk


def test_a_rows_hash_is_the_same_text_joined_in_pairs_as_in_one_chain():
    # The staging hash joins the fields two by two (a chain of || took time of the square of
    # the width); the text hashed, and so every record's kept hash, is the same as before
    from django.db import connection
    from psycopg import sql

    from tasks.engine.stage import joined_in_pairs

    for width in (1, 2, 3, 7, 64):
        fields = [sql.Literal(f"v{n}") for n in range(width)]
        chain = sql.SQL(" || chr(31) || ").join(fields)
        query = sql.SQL("SELECT {} = {}, {}").format(joined_in_pairs(fields), chain, chain)
        with connection.cursor() as cursor:
            cursor.execute(query.as_string(cursor.connection))
            same, text = cursor.fetchone()
        assert same and text == "\x1f".join(f"v{n}" for n in range(width)), width
