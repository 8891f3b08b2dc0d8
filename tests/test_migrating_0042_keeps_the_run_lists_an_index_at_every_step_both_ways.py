"""Migration 0042 rebuilds run_history_idx and run_queued_at_idx: while it does, an import's run
history (`GET /imports/{id}/runs/`) keeps an index on (import, queued_at), and the dashboard's
chart and the retention one on queued_at, at every statement, forwards and backwards. 0042
first dropped each before building its new definition: for as long as that build took (5-10 s
at a million runs, growing with the table) the history had only the foreign key's index and
queued_at none (reviewD; tests/bench/bench_migration_0042_at_a_million_runs.py).
"""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.backends.base.schema import BaseDatabaseSchemaEditor

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE_0042 = "0041_lost_ends_untold_are_found_by_their_own_index"
# The valid, whole (not partial) indexes of the runs table by their first two key columns.
LEADING_COLUMNS = """
SELECT c.relname, array_to_string(ARRAY(
    SELECT a.attname FROM unnest(i.indkey[0:1]) WITH ORDINALITY AS k(attnum, n)
    JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum ORDER BY k.n), ',')
FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
WHERE i.indrelid = 'schedules_importrun'::regclass AND i.indisvalid AND i.indpred IS NULL
"""


def lists_without_an_index() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute(LEADING_COLUMNS)
        leading = {columns for _, columns in cursor.fetchall()}
    missing = []
    if "scheduled_import_id,queued_at" not in leading:
        missing.append("an import's run history")
    if not any(columns.split(",")[0] == "queued_at" for columns in leading):
        missing.append("the runs by queued_at")
    return missing


def definitions() -> dict[str, str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'schedules_importrun'"
        )
        return dict(cursor.fetchall())


def test_each_statement_of_0042_leaves_the_run_lists_an_index_forwards_and_backwards(
    monkeypatch,
):
    # Given the database as 0042 left it, and every schema statement watched
    migrated = definitions()
    gaps: list[tuple[str, list[str]]] = []
    execute = BaseDatabaseSchemaEditor.execute

    def watched(editor, sql, params=()):
        execute(editor, sql, params)
        if missing := lists_without_an_index():
            gaps.append((str(sql)[:80], missing))

    try:
        # When 0042 is taken back, then applied again
        monkeypatch.setattr(BaseDatabaseSchemaEditor, "execute", watched)
        call_command("migrate", "schedules", BEFORE_0042, verbosity=0)
        before = definitions()
        call_command("migrate", "schedules", verbosity=0)
    finally:
        monkeypatch.setattr(BaseDatabaseSchemaEditor, "execute", execute)
        call_command("migrate", verbosity=0)

    # Then no statement left a list without its index, and each way gave its definitions
    assert gaps == []
    assert "run_history_idx" in before and "INCLUDE" not in before["run_history_idx"]
    assert "run_status_list_idx" not in before
    assert definitions() == migrated
