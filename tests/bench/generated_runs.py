"""The runs table as the benches of its reads set it up: a history of finished runs the
database generates (the reads bench's runs, tests/bench/bench_reads.py), and the table's
indexes put back as migration 0041 left them, to time the previous release beside this one.
"""

from __future__ import annotations

from django.db import connection

from schedules.models import ImportRun
from tests.bench import bench_reads

TABLE = ImportRun._meta.db_table

# The indexes migration 0042 added, and the two it rebuilt as 0041 had them.
NEW_IN_0042 = ["run_status_list_idx", "run_trigger_list_idx", "run_duration_rank_idx"]
INDEXES_AS_0041 = [
    "DROP INDEX IF EXISTS run_history_idx",
    "DROP INDEX IF EXISTS run_queued_at_idx",
    *(f"DROP INDEX IF EXISTS {name}" for name in NEW_IN_0042),
    f"CREATE INDEX run_history_idx ON {TABLE} (scheduled_import_id, queued_at DESC)",
    f"CREATE INDEX run_queued_at_idx ON {TABLE} (queued_at) INCLUDE (status)",
]


def insert_runs(series: str, params: dict[str, object]) -> None:
    """One finished run (bench_reads.run_column_values: run g queued g/`%(runs)s` of a year
    ago) for each row of `series`, a SELECT of `g` (the series), `imp` (the run's import) and
    `h` (a hash of g in 0..99); `params` fill its placeholders and `runs`."""
    columns, values, defaults = bench_reads.run_column_values()
    named = {f"p{n}": value for n, value in enumerate(defaults)}
    sql = (
        f"INSERT INTO {TABLE} ({', '.join(columns)}) "
        f"SELECT {', '.join(values)} FROM ({series}) AS s"
    )
    with connection.cursor() as cursor:
        # The run tally trigger counts runs as they finish; a generated past is not a finish.
        cursor.execute(f"ALTER TABLE {TABLE} DISABLE TRIGGER USER")
        try:
            cursor.execute(sql, {**params, **named})
        finally:
            cursor.execute(f"ALTER TABLE {TABLE} ENABLE TRIGGER USER")
