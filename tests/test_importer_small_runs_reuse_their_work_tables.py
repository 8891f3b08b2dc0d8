"""A connection keeps its work tables from one small run to the next, emptied, instead of
creating and dropping them every run (issue 15: the two CREATE TEMP TABLEs and the DROP were
7 ms of a 100-row run's 11 ms in the database). What one run staged, found bad or changed never
shows in the next one, whatever each file looks like."""

from collections import Counter

import psycopg
import pytest
from django.db import connection

from tasks.engine import stage_copy, tables
from tests.factories import make_import
from tests.importer_support import records, row_errors, run_now

pytestmark = pytest.mark.django_db(transaction=True)


def body(rows: range, bad_line: int | None = None, header: str = "sku,name,price") -> str:
    lines = [header]
    for row in rows:
        price = "not a price" if len(lines) + 1 == bad_line else f"{row}.50"
        lines.append(f"S-{row},item {row},{price}")
    return "\n".join(lines) + "\n"


def run_counted(imp):
    """A run of `imp` here, with the kinds of the statements it sent."""
    kinds: Counter = Counter()
    execute = psycopg.Cursor.execute

    def counted(cursor, query, *args, **kwargs):
        text = query.as_string(cursor) if isinstance(query, psycopg.sql.Composable) else query
        kinds[" ".join(str(text).split()[:2])] += 1
        return execute(cursor, query, *args, **kwargs)

    psycopg.Cursor.execute = counted
    try:
        run = run_now(imp)
    finally:
        psycopg.Cursor.execute = execute
    return run, kinds


def made_or_dropped(kinds: Counter) -> list[str]:
    return [kind for kind in kinds if kind.startswith(("CREATE", "DROP"))]


@pytest.fixture
def connection_that_ran_a_small_import(alice, csv_server):
    connection.close()
    typed = [{"name": "price", "type": "decimal"}]
    first = make_import(alice, csv_server.serve("/first.csv", body(range(3))), name="first",
                        dataset="first", columns=typed)  # fmt: skip
    run, kinds = run_counted(first)
    assert run.status == "succeeded"
    assert made_or_dropped(kinds), kinds  # a fresh connection makes its tables
    yield typed
    connection.close()


def test_the_next_small_file_is_staged_in_the_tables_the_last_one_left(
    alice, csv_server, connection_that_ran_a_small_import
):
    # Given a connection that ran a small import, and an import of another file shaped alike
    # with a bad row on line 4
    typed = connection_that_ran_a_small_import
    url = csv_server.serve("/p.csv", body(range(10, 15), bad_line=4))
    imp = make_import(alice, url, name="p", dataset="p", columns=typed)

    # When it runs
    run, kinds = run_counted(imp)

    # Then it created and dropped no table, and its rows and line numbers are its own
    assert made_or_dropped(kinds) == [], kinds
    assert (run.status, run.rows_read, run.rows_inserted, run.rows_failed) == (
        "partial", 5, 4, 1,
    )  # fmt: skip
    assert row_errors(run) == [
        (4, "price", "not a valid decimal: expected a decimal number within ±1e308")
    ]
    assert sorted(records(imp)) == ["S-10", "S-11", "S-13", "S-14"]

    # And the next clean file does not inherit that bad row (its run makes the table of
    # changes, the first reload on this connection)
    csv_server.serve("/p.csv", body(range(10, 15)))
    run, kinds = run_counted(imp)
    assert (run.status, run.rows_failed, run.rows_inserted, run.rows_updated) == (
        "succeeded", 0, 1, 0,
    )  # fmt: skip

    # And a file with one row changed writes that row alone, run after run, in the table of
    # changes kept from that run
    for price in ("1.25", "2.25"):
        csv_server.serve(
            "/p.csv", body(range(10, 15)).replace("S-12,item 12,12.50", f"S-12,x,{price}")
        )
        run, kinds = run_counted(imp)
        assert (run.status, run.rows_updated, run.rows_unchanged) == ("succeeded", 1, 4)
        assert records(imp)["S-12"] == {"sku": "S-12", "name": "x", "price": float(price)}
    assert made_or_dropped(kinds) == [], kinds


def test_a_file_of_another_shape_gets_tables_of_its_own(
    alice, csv_server, connection_that_ran_a_small_import
):
    # Given a connection that ran a small import, and a file with other columns
    url = csv_server.serve("/other.csv", body(range(4), header="code,label,cost"))
    imp = make_import(alice, url, name="other", dataset="other", key_column="code")

    # When it runs
    run, kinds = run_counted(imp)

    # Then it lands whole in a staging table made for it
    assert "CREATE TEMP" in kinds, kinds
    assert (run.status, run.rows_inserted) == ("succeeded", 4)
    assert records(imp)["S-2"] == {"code": "S-2", "label": "item 2", "cost": "2.50"}


def test_a_file_copy_rejects_is_staged_again_from_line_one_in_the_same_table(
    alice, csv_server, connection_that_ran_a_small_import
):
    # Given a kept staging table, and a file COPY refuses (a row with a field too many)
    typed = connection_that_ran_a_small_import
    text = body(range(5)).replace("S-3,item 3,3.50", "S-3,item 3,3.50,extra")
    imp = make_import(alice, csv_server.serve("/p.csv", text), name="p", dataset="p",
                      columns=typed)  # fmt: skip

    # When it runs
    run, _ = run_counted(imp)

    # Then the Python path restaged it with the file's own line numbers
    assert (run.status, run.rows_inserted, run.rows_failed) == ("partial", 4, 1)
    assert row_errors(run) == [(5, None, "expected 3 fields, found 4")]


def test_a_big_file_drops_its_tables_at_the_end(
    alice, csv_server, connection_that_ran_a_small_import, monkeypatch
):
    # Given a file above the size a connection keeps its tables for
    monkeypatch.setattr(tables, "SMALL_TABLE_ROWS", 5)
    imp = make_import(alice, csv_server.serve("/big.csv", body(range(6))), name="big",
                      dataset="big", columns=connection_that_ran_a_small_import)  # fmt: skip

    # When it runs
    run, kinds = run_counted(imp)

    # Then its tables are dropped at its end, and the next run makes them again
    assert run.status == "succeeded"
    assert kinds["DROP TABLE"] == 1, kinds
    csv_server.serve("/big.csv", body(range(3)))
    run, kinds = run_counted(imp)
    assert run.rows_unchanged == 3
    assert "CREATE TEMP" in kinds, kinds


@pytest.mark.parametrize("path", ["copy", "python"])
def test_a_run_that_stopped_half_way_leaves_nothing_to_the_next(
    alice, csv_server, connection_that_ran_a_small_import, monkeypatch, path
):
    # Given a run whose merge fails after its rows were staged and checked
    typed = connection_that_ran_a_small_import
    if path == "python":
        monkeypatch.setattr(stage_copy, "fast_path_refusal", lambda imp, first: "forced")
    imp = make_import(alice, csv_server.serve("/p.csv", body(range(5), bad_line=3)), name="p",
                      dataset="p", columns=typed)  # fmt: skip
    from tasks.engine import merge

    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(merge, "insert_new", broken)
    assert run_now(imp).status == "failed"
    monkeypatch.undo()
    if path == "python":
        monkeypatch.setattr(stage_copy, "fast_path_refusal", lambda imp, first: "forced")

    # When the next run of another file shaped alike runs on the same connection
    other = make_import(alice, csv_server.serve("/q.csv", body(range(20, 22))), name="q",
                        dataset="q", columns=typed)  # fmt: skip
    run = run_now(other)

    # Then it sees only its own rows
    assert (run.status, run.rows_read, run.rows_inserted, run.rows_failed) == (
        "succeeded", 2, 2, 0,
    )  # fmt: skip
    assert sorted(records(other)) == ["S-20", "S-21"]


def test_emptied_tables_are_truncated_once_enough_rows_were_deleted_from_them(
    alice, csv_server, connection_that_ran_a_small_import, monkeypatch
):
    # Given a connection that truncates its work tables once 8 rows were deleted from them
    monkeypatch.setattr(tables, "DEAD_ROWS_LIMIT", 8)
    typed = connection_that_ran_a_small_import
    imp = make_import(alice, csv_server.serve("/p.csv", body(range(3), bad_line=3)), name="p",
                      dataset="p", columns=typed)  # fmt: skip

    # When other files of 3 rows run one after another
    emptied = []
    for start in (10, 20, 30):
        csv_server.serve("/p.csv", body(range(start, start + 3), bad_line=3))
        run, kinds = run_counted(imp)
        emptied.append([kind for kind in kinds if kind.startswith(("TRUNCATE", "WITH"))])

    # Then the first file's rows were deleted (6 deleted so far, the connection's first file
    # included), the second's truncated (9), the third's deleted again, each run with its own
    # line numbers
    deleted, truncated = ['WITH "gone_importbeat_raw"'], ['TRUNCATE "importbeat_raw",']
    assert emptied == [deleted, truncated, deleted]
    assert row_errors(run) == [
        (3, "price", "not a valid decimal: expected a decimal number within ±1e308")
    ]
