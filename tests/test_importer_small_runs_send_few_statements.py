"""A small run sends few statements (issue 15): it takes the same steps as a big one, but
writes nothing nobody could see (its step and progress while it lasts less than
VISIBLE_AFTER_SECONDS), checks for a cancel once, at the commit of its rows, and gives its
work tables neither statistics nor extra memory; on a connection that ran imports before, it
makes and drops no table; its COPY commits by itself, and its end commits with its rows.
Before: 38 statements for 100 rows."""

from collections import Counter

import psycopg
import psycopg.sql
import pytest

from schedules.models import ImportRun
from tasks import runner
from tasks.engine import progress
from tests.factories import make_import

pytestmark = pytest.mark.django_db(transaction=True)

ROWS = 100


def csv_body(changed: int = 0) -> str:
    lines = ["sku,name,price,stock"]
    lines += [f"S-{row},item {row},{row + (row < changed)}.50,{row % 7}" for row in range(ROWS)]
    return "\n".join(lines) + "\n"


class RecordingTask:
    """The runner's bound Celery task, recording its state updates (what Flower shows)."""

    def __init__(self, run_id: int) -> None:
        self.request = type("request", (), {"hostname": "worker@test", "id": f"task-{run_id}"})
        self.states: list[str] = []

    def update_state(self, state: str, meta: dict) -> None:
        self.states.append(state)


def statements_of(imp) -> tuple[ImportRun, Counter, RecordingTask]:
    """One run of `imp` on the worker's path (lease, owner's cap, claim, engine, outcome), with
    every statement it sends, through Django or the engine's own psycopg cursor, by kind."""
    run = ImportRun.objects.create(scheduled_import=imp, trigger="manual")
    task = RecordingTask(run.pk)
    kinds: Counter = Counter()
    execute = psycopg.Cursor.execute

    def counted(cursor, query, *args, **kwargs):
        text = query.as_string(cursor) if isinstance(query, psycopg.sql.Composable) else query
        kind = " ".join(str(text).split()[:3])
        # PostgreSQL 14 and 15 only: the input checks' functions, made once per connection.
        if kind != "CREATE OR REPLACE":
            kinds[kind] += 1
        return execute(cursor, query, *args, **kwargs)

    commit = psycopg.Connection.commit

    def counted_commit(conn):
        # Statements outside a transaction commit by themselves (Django's autocommit): these
        # are the transactions of several statements.
        kinds["COMMIT"] += 1
        return commit(conn)

    psycopg.Cursor.execute, psycopg.Connection.commit = counted, counted_commit
    try:
        runner.execute(run.pk, task)
    finally:
        psycopg.Cursor.execute, psycopg.Connection.commit = execute, commit
    run.refresh_from_db()
    return run, kinds, task


def updates_of_the_run(kinds: Counter) -> int:
    return _of_the_run(kinds, "UPDATE")


def reads_of_the_run(kinds: Counter) -> int:
    # Its own SQL reads it as `r` (schedules/rows.py), the ORM by its table's name.
    return _of_the_run(kinds, "SELECT", 'SELECT r."id"')


def _of_the_run(kinds: Counter, verb: str, *others: str) -> int:
    table = (f"{verb} schedules_importrun", f'{verb} "schedules_importrun"', *others)
    return sum(n for kind, n in kinds.items() if kind.startswith(table))


@pytest.fixture
def unhurried(monkeypatch, alice, csv_server):
    # A busy test machine must not make a 40 ms run look long enough to be seen.
    monkeypatch.setattr(progress, "VISIBLE_AFTER_SECONDS", 60)
    # A worker's connection has run imports before: it keeps its work tables (and the table
    # of changes, made by a reload) from one run to the next.
    warm = make_import(alice, csv_server.serve("/warm.csv", csv_body()), name="w", dataset="w")
    statements_of(warm)
    csv_server.serve("/warm.csv", csv_body(changed=1))
    statements_of(warm)


def test_a_100_row_first_load_sends_at_most_half_the_statements_it_used_to(
    alice, csv_server, unhurried
):
    # Given an import of a 100-row file into an empty dataset
    imp = make_import(alice, csv_server.serve("/small.csv", csv_body()))

    # When a worker runs it
    run, kinds, task = statements_of(imp)

    # Then it lands whole, with its step and progress written at its end
    assert (run.status, run.rows_inserted, run.phase, run.bytes_read) == (
        "succeeded", ROWS, "merge", len(csv_body()),
    )  # fmt: skip
    # And it sent at most 12 statements (38 before, 13 while its outcome had a transaction of
    # its own), of them two UPDATEs of its row: the claim (which answers with the row), its
    # end committed with its rows; and two reads of it: with its import and dataset at its
    # start, locked with its import at its end
    assert sum(kinds.values()) - kinds["COMMIT"] <= 12, kinds
    assert updates_of_the_run(kinds) == 2, kinds
    # And one transaction of several statements committed: its rows with its counts and its
    # end (before, three: the COPY's, the rows', its end's)
    assert kinds["COMMIT"] == 1, kinds
    assert reads_of_the_run(kinds) == 2, kinds
    assert not [kind for kind in kinds if kind.startswith(("SET", "RESET", "ANALYZE"))], kinds
    # And its work tables were the connection's, emptied at its end by one statement
    assert not [kind for kind in kinds if kind.startswith(("CREATE", "DROP"))], kinds
    assert [kind for kind in kinds if kind.startswith(("TRUNCATE", "WITH", "DELETE"))] == [
        'WITH "gone_importbeat_raw" AS'
    ], kinds
    # And its task state (Flower) was not written while it ran
    assert task.states == []


def test_a_100_row_reload_with_changes_is_small_too(alice, csv_server, unhurried):
    # Given a dataset that holds the file, and the file with 10 rows changed
    imp = make_import(alice, csv_server.serve("/small.csv", csv_body()))
    statements_of(imp)
    csv_server.serve("/small.csv", csv_body(changed=10))

    # When a worker runs it again
    run, kinds, _ = statements_of(imp)

    # Then the changes land, with no more statements than the repeated-key search and the
    # table of changes need
    assert (run.status, run.rows_updated, run.rows_unchanged) == ("succeeded", 10, ROWS - 10)
    assert sum(kinds.values()) - kinds["COMMIT"] <= 17, kinds
    assert kinds["COMMIT"] == 1, kinds
    assert not [kind for kind in kinds if kind.startswith(("CREATE", "DROP"))], kinds
    assert updates_of_the_run(kinds) == 2, kinds
    assert not [kind for kind in kinds if kind.startswith(("SET", "RESET", "ANALYZE"))], kinds
