"""The floor of a small run: the least any design does for a 100-row file, in this process.

What no engine can skip: download the file (a fresh HTTP session, as every run opens), then in
one transaction COPY its bytes into a temporary table, write its rows as records (a JSON object
and a content hash each, into the real records table and its unique index), and mark the run
finished; commit. Four statements and one commit, against the engine's whole path on the same
connection and server (`runner.execute`). Nothing of it is validated, compared or counted, so
it is a floor, not a design.
"""

from __future__ import annotations

import time

import requests
from django.db import connection, transaction
from psycopg import sql

from schedules.models import ImportRun, Record

COLUMNS = ("sku", "name", "price", "stock")


def floor_run(run: ImportRun) -> None:
    """The floor's work for one run (its import's file, its dataset, its run row)."""
    imp = run.scheduled_import
    with requests.Session() as session:
        session.trust_env = False
        body = session.get(imp.source_url, timeout=10).content
    columns = sql.SQL(", ").join(sql.Identifier(name) for name in COLUMNS)
    values = sql.SQL(", ").join(
        sql.SQL("coalesce({}, '')").format(sql.Identifier(name)) for name in COLUMNS
    )
    with transaction.atomic(), connection.cursor() as cursor:
        pg = cursor.cursor
        pg.execute(
            sql.SQL("CREATE TEMP TABLE floor_raw ({}) ON COMMIT DROP").format(
                sql.SQL(", ").join(sql.SQL("{} text").format(sql.Identifier(n)) for n in COLUMNS)
            )
        )
        with pg.copy(
            sql.SQL("COPY floor_raw ({}) FROM STDIN (FORMAT csv, HEADER true)").format(columns)
        ) as copy:
            copy.write(body)
        pg.execute(
            sql.SQL(
                "INSERT INTO {record} (dataset_id, key, data, content_hash, first_seen_run_id,"
                " last_changed_run_id, created_at, updated_at)"
                " SELECT {dataset}, sku, jsonb_object({names}::text[], ARRAY[{values}]),"
                " hashtextextended(concat_ws(chr(31), {columns}), 0), {run}, {run}, now(), now()"
                " FROM floor_raw"
            ).format(
                record=sql.Identifier(Record._meta.db_table),
                dataset=sql.Literal(imp.dataset_id),
                names=sql.Literal(list(COLUMNS)),
                values=values,
                columns=columns,
                run=sql.Literal(run.pk),
            )
        )
        rows = pg.rowcount
        pg.execute(
            "UPDATE schedules_importrun SET status = 'succeeded', finished_at = now(),"
            " rows_read = %s, rows_inserted = %s WHERE id = %s",
            (rows, rows, run.pk),
        )


def floor_ms_per_run(runs: list[ImportRun]) -> float:
    """Median milliseconds of the floor's work per run, one run after the other."""
    timings = []
    for run in runs:
        started = time.perf_counter()
        floor_run(run)
        timings.append((time.perf_counter() - started) * 1000)
    timings.sort()
    return timings[len(timings) // 2]
