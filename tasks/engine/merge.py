"""Step 5, the merge: the dataset's records as the file says, in one transaction.

An anti-join on the stored content hash finds the new and changed rows, so unchanged rows are
never written; one UPDATE rewrites the changed records and one plain INSERT adds the new keys.
A first load into an empty dataset inserts straight from staging. Mode sync then deletes the
keys the file no longer has.
"""

from __future__ import annotations

import psycopg
from django.db import IntegrityError, transaction
from psycopg import sql

from schedules import dataset_keys
from schedules.models import ImportRun, Record, ScheduledImport
from schedules.services import (
    RunCounts,
    finish_with_rows,
    lock_dataset_keyed,
    note_merge,
    outcome_of,
    record_committed_counts,
)

from ..errors import PermanentImportError, RunCancelled
from .digest import applied_key
from .first_record import Layout
from .progress import stop_if_cancelled, timed
from .tables import (
    BAD,
    CHANGES,
    DUPES,
    RAW,
    SMALL_TABLE_ROWS,
    analyze,
    has_changes_table,
    lit,
    made_changes_table,
    rendered,
    trimmed,
    work_mem,
)
from .validate import TRUE_WORDS, report_failed_rows

# jsonb_build_object and concat take at most 100 arguments (FUNC_MAX_ARGS).
PAIRS_PER_CALL = 50


# A valid datetime (validate.DATETIME_RE) that ends with an offset. Not the offset's pattern
# alone: it took a date's own day (`2024-01-15`: `-15`) for one, and stored it in UTC.
AWARE_RE = r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?)?(Z|[+-]\d{2}(:?\d{2})?)$"


class RepeatedKey(Exception):
    """A first load met a key twice before the file was searched for repeated keys."""


def merge_staged(
    pg: psycopg.Cursor,
    run: ImportRun,
    layout: Layout,
    counts: RunCounts,
    *,
    search_keys: bool,
) -> None:
    """Write the changes in one transaction and note which file the dataset now holds.

    The dataset row is locked before the changes are worked out, so merges into one dataset
    take turns: each compares the file with the records as the previous merge left them, and
    the dataset ends as this file made it.

    The file is searched for repeated keys when `search_keys` is set or the dataset has
    records. Otherwise (a first load without bad rows) the records' unique index stands in for
    the search, a sort of every key (1 s a million), and RepeatedKey says it refused one.
    """
    imp = run.scheduled_import
    record = Record._meta.db_table
    data = rendered(pg, ("row_json", layout.key, "c"), lambda: row_json(layout, "c"))
    try:
        with timed("merge and commit", run), transaction.atomic(), work_mem(pg, counts.rows_read):
            keyed_by, records = _lock_dataset(imp.dataset_id, imp.pk)
            pg.execute(dataset_has_records(record, imp.dataset_id, imp.pk))
            has_records, *import_now = pg.fetchone()
            _refuse_an_import_changed_meanwhile(imp, *import_now)
            first_load = not has_records
            if not first_load:
                _refuse_another_key(imp, keyed_by, records)
            keys_checked = search_keys or not first_load
            if keys_checked:
                report_failed_rows(pg, run, layout, counts)
            counts.rows_updated = 0
            if not first_load:
                with timed("changes", run):
                    made = has_changes_table(pg)
                    pg.execute(
                        find_changes(record, imp.dataset_id, counts.rows_failed > 0, into=made)
                    )
                    analyze(pg, CHANGES, pg.rowcount)
                    if not made:
                        made_changes_table(pg)
                pg.execute(update_changed(layout, record, run.pk, data=data))
                counts.rows_updated = pg.rowcount
            pg.execute(
                insert_new(
                    layout,
                    record,
                    imp.dataset_id,
                    run.pk,
                    first_load=first_load,
                    any_failed=counts.rows_failed > 0,
                    data=data,
                )
            )
            counts.rows_inserted = pg.rowcount
            counts.rows_deleted = 0
            synced = (
                imp.mode == ScheduledImport.Mode.SYNC
                and outcome_of(counts.rows_read, counts.rows_failed) != ImportRun.Status.FAILED
            )
            if synced:
                # Only reached once the whole file was staged: a broken download never
                # deletes. Nor does a file whose every row was refused: its keys are what
                # broke (blank, a column shifted), so nothing says which records are absent,
                # and the run that failed saying "nothing landed" had deleted every record.
                pg.execute(
                    delete_absent(record, imp.dataset_id, layout, any_failed=counts.rows_failed > 0)
                )
                counts.rows_deleted = pg.rowcount
            applied = applied_key(imp, run.file_digest) if run.file_digest else ""
            note_merge(
                imp.dataset_id,
                applied,
                run.pk if applied else None,
                counts.rows_inserted - counts.rows_deleted,
                imp.key_column,
                # Every record it writes holds the file's columns (row_json), the key's too.
                layout.names,
                # Nor does any other record remain: the dataset had none, or a sync deleted
                # every key the file lacks and the file's rows all landed (a record whose row
                # failed keeps its old fields). An unchanged record has the file's columns:
                # its content hash covers them (Layout.signature).
                every_record=first_load or (synced and counts.rows_failed == 0),
            )
            counts.rows_unchanged = (
                counts.rows_read - counts.rows_failed - counts.rows_inserted - counts.rows_updated
            )
            # The counts commit with the rows: a run whose rows landed is finished from them.
            # A small file's run ends right here, its outcome with its rows (one transaction
            # and one wait for the disk less); a big one's in a transaction of its own.
            # Also the last safe point: a cancel asked before this stops the run with the
            # dataset as it was (the transaction rolls back); one asked after it is too late.
            if counts.rows_read < SMALL_TABLE_ROWS:
                committed = finish_with_rows(run, counts)
            else:
                committed = record_committed_counts(run, counts)
            if not committed:
                stop_if_cancelled(run)
    except (IntegrityError, psycopg.errors.UniqueViolation) as error:
        if not keys_checked:
            raise RepeatedKey from error
        raise


def _lock_dataset(dataset_id: int, import_id: int) -> tuple[str, int]:
    """Hold the dataset row until the merge commits (`services.lock_datasets`); the column its
    records are keyed by, and how many there are.

    Records have no database foreign key (its check ran once per written row); this one lock
    is what that check took a million times: the dataset cannot be deleted under the merge.
    A dataset gone because its import was moved away (an edit) stops the run, cancelled; a
    move that left the dataset standing is found by the statement after this one
    (dataset_has_records), which sees every edit committed while this one waited.
    """
    keyed = lock_dataset_keyed(dataset_id)
    if keyed is None:
        if _moved(import_id, dataset_id):
            raise RunCancelled(MOVED)
        raise PermanentImportError("the import's dataset was deleted during the run")
    return keyed


MOVED = (
    "its import was moved to another dataset while it ran; neither dataset was changed, and "
    "the next run fills the new one"
)


REKEYED = (
    "its import's key column or mode was changed while it ran; the dataset was not changed, and "
    "the next run imports as the import now says"
)


def _moved(import_id: int, dataset_id: int) -> bool:
    return ScheduledImport.objects.filter(pk=import_id).exclude(dataset_id=dataset_id).exists()


def _refuse_another_key(imp: ScheduledImport, keyed_by: str, records: int) -> None:
    """The dataset's records are keyed by another column than the import's (it was changed
    while a run ran, or before datasets noted their key): its rows would land beside them."""
    if dataset_keys.conflicts(keyed_by, records, imp.key_column, imp.mode):
        words = dataset_keys.conflict(imp.dataset.name, keyed_by, records, imp.key_column)
        raise PermanentImportError(f"{words}; the dataset was not changed")


def dataset_has_records(record_table: str, dataset_id: int, import_id: int) -> sql.Composed:
    """Whether the dataset has records, and the import's dataset, key column and mode as they
    are now: a statement after the dataset's lock, which sees every edit committed before it
    (the lock's own statement reads from before its wait)."""
    return sql.SQL(
        "SELECT EXISTS (SELECT 1 FROM {records} WHERE dataset_id = {dataset}),"
        " i.dataset_id, i.key_column, i.mode"
        " FROM (SELECT 1) AS one LEFT JOIN {imports} AS i ON i.id = {imp}"
    ).format(
        records=sql.Identifier(record_table),
        dataset=lit(dataset_id),
        imports=sql.Identifier(ScheduledImport._meta.db_table),
        imp=lit(import_id),
    )


def _refuse_an_import_changed_meanwhile(
    imp: ScheduledImport, dataset_id: int | None, key_column: str | None, mode: str | None
) -> None:
    """Stop the run, cancelled, when its import was moved to another dataset or given another
    key column or mode since the attempt read it: an edit saved while the run downloaded (or
    waited for the dataset's lock) was judged on the dataset as it was, and the run merged as
    the import had been. Switched from sync to upsert (which let a second import write to the
    dataset), the run still deleted, as sync, the second import's records; given another key
    on an empty dataset, it keyed its records by the old one, and every run after it failed
    (race hunt). An edit waits for a merge in progress (services.as_it_is_now), so none lands
    after this. None: the import itself is gone, which the merge's commit says."""
    if dataset_id is None:
        return
    if dataset_id != imp.dataset_id:
        raise RunCancelled(MOVED)
    if (key_column, mode) != (imp.key_column, imp.mode):
        raise RunCancelled(REKEYED)


def find_changes(
    record_table: str, dataset_id: int, any_failed: bool, *, into: bool = False
) -> sql.Composed:
    """The winning valid rows whose content differs from the stored record (or that are new).

    One anti-join on the stored content hash, before anything is written: an unchanged
    re-import ends here with an empty table and writes nothing (measured: filtering first
    made the unchanged re-load 40% faster than letting the upsert skip rows). `record_id` is
    NULL for a key the dataset does not have yet. The table keeps the whole staged row, so the
    writes below read the few changed rows from it and never scan the staged file again (two
    scans of a million staged rows, 0.3 – 0.6 s each, on a re-load with 1 % of them changed).
    `into`: the connection keeps that table, empty, from an earlier run (tables.py).
    """
    start = "INSERT INTO {changes}" if into else "CREATE TEMP TABLE {changes} AS"
    return sql.SQL(
        start + " SELECT s.*, r.id AS record_id FROM {raw} s"
        " LEFT JOIN {record} r ON r.dataset_id = {dataset} AND r.key = s.key"
        " WHERE (r.id IS NULL OR r.content_hash <> s.content_hash) AND {valid}"
    ).format(
        changes=sql.Identifier(CHANGES),
        raw=sql.Identifier(RAW),
        record=sql.Identifier(record_table),
        dataset=lit(dataset_id),
        valid=_winning_valid_rows("s", any_failed),
    )


def _winning_valid_rows(alias: str, any_failed: bool) -> sql.Composed:
    """The staged rows that may land: keyed, well formed, not bad, not superseded.

    Without failed rows the two NOT EXISTS are left out rather than left to the planner: it
    probes an empty table once per staged row (measured 1.4 s for a million rows).
    """
    valid = "{s}.key <> '' AND {s}.problem IS NULL"
    if any_failed:
        valid += (
            " AND NOT EXISTS (SELECT 1 FROM {bad} b WHERE b.line = {s}.line)"
            " AND NOT EXISTS (SELECT 1 FROM {dupes} d WHERE d.line = {s}.line)"
        )
    return sql.SQL(valid).format(
        s=sql.Identifier(alias), bad=sql.Identifier(BAD), dupes=sql.Identifier(DUPES)
    )


def update_changed(
    layout: Layout, record_table: str, run_id: int, *, data: sql.Composable | None = None
) -> sql.Composed:
    """Rewrite the records whose content changed; rowcount is `rows_updated`. `data`: the
    layout's row_json for `c`, when the caller has it rendered."""
    data = row_json(layout, "c") if data is None else data
    return sql.SQL(
        "UPDATE {record} r SET data = {data}, content_hash = c.content_hash,"
        "  last_changed_run_id = {run}, updated_at = now()"
        " FROM {changes} c WHERE r.id = c.record_id"
    ).format(
        record=sql.Identifier(record_table),
        changes=sql.Identifier(CHANGES),
        run=lit(run_id),
        data=data,
    )


def insert_new(
    layout: Layout,
    record_table: str,
    dataset_id: int,
    run_id: int,
    *,
    first_load: bool = False,
    any_failed: bool = True,
    data: sql.Composable | None = None,
) -> sql.Composed:
    """Insert the keys the dataset does not have; rowcount is `rows_inserted`.

    A plain INSERT, not `INSERT ... ON CONFLICT`: the speculative insertion ON CONFLICT needs
    (an extra index probe and a confirmation record per row) made a first load of a million
    rows take twice as long (21 s against 10 s). The keys are known to be new and unique in
    the file; another import writing the same dataset at the same moment makes this fail with
    a unique violation, which the importer turns into a transient error (the run retries).
    `first_load` (the dataset has no record): every winning valid row is new, so the rows come
    straight from staging, without the anti-join and its table of changes (1.5 s a million);
    otherwise from the table of changes, the rows without a record. `data`: as update_changed.
    """
    data = row_json(layout, "c") if data is None else data
    if first_load:
        source, rows = RAW, _winning_valid_rows("c", any_failed)
    else:
        source, rows = CHANGES, sql.SQL("c.record_id IS NULL")
    return sql.SQL(
        "INSERT INTO {record} (dataset_id, key, data, content_hash, first_seen_run_id,"
        "   last_changed_run_id, created_at, updated_at)"
        " SELECT {dataset}, c.key, {data}, c.content_hash, {run}, {run}, now(), now()"
        " FROM {source} c WHERE {rows}"
    ).format(
        record=sql.Identifier(record_table),
        source=sql.Identifier(source),
        dataset=lit(dataset_id),
        run=lit(run_id),
        data=data,
        rows=rows,
    )


def delete_absent(
    record_table: str, dataset_id: int, layout: Layout, *, any_failed: bool = True
) -> sql.Composed:
    """Mode sync: drop the records whose key the file no longer has.

    A key seen on a bad row still counts as present: a typo in one field must not delete it.
    So does every key a row with the wrong number of fields may name (its columns hold them:
    stage_python.possible_keys), as a hashed anti-join on them; left out when no row failed
    (no such row then).
    """
    statement = (
        "DELETE FROM {record} r WHERE r.dataset_id = {dataset}"
        " AND NOT EXISTS (SELECT 1 FROM {raw} s WHERE s.key = r.key)"
    )
    if any_failed:
        statement += (
            " AND NOT EXISTS (SELECT 1 FROM (SELECT {value} AS key FROM {raw} s"
            "  CROSS JOIN LATERAL unnest(ARRAY[{columns}]) AS v(value)"
            "  WHERE s.problem IS NOT NULL) p WHERE p.key = r.key)"
        )
    return sql.SQL(statement).format(
        record=sql.Identifier(record_table),
        dataset=lit(dataset_id),
        raw=sql.Identifier(RAW),
        value=trimmed(sql.Identifier("v", "value")),
        columns=sql.SQL(", ").join(
            sql.SQL("s.{}").format(layout.col(i)) for i in range(layout.width)
        ),
    )


def _json_value(column: sql.Composable, spec: dict | None) -> sql.Composable:
    """The JSON value of one field: text as is; a typed column's value converted, blank -> null.

    Only evaluated for rows that passed validation, so the casts cannot fail.
    """
    if spec is None:
        return sql.SQL("coalesce({}, '')").format(column)
    kind = spec.get("type", "text")
    value = trimmed(column)
    converted = {
        "text": sql.SQL("{}").format(column),
        "int": sql.SQL("({})::bigint").format(value),
        "decimal": sql.SQL("({})::numeric").format(value),
        "bool": sql.SQL("lower({}) IN ({})").format(
            value, sql.SQL(", ").join(lit(w) for w in TRUE_WORDS)
        ),
        "date": sql.SQL("({})::date").format(value),
        # A value with an offset stays aware (rendered in UTC); one without stays naive.
        "datetime": sql.SQL(
            "CASE WHEN {v} ~ {aware} THEN to_jsonb(({v})::timestamptz)"
            " ELSE to_jsonb(({v})::timestamp) END"
        ).format(v=value, aware=lit(AWARE_RE)),
    }[kind]
    return sql.SQL("CASE WHEN {} = '' THEN NULL ELSE {} END").format(value, converted)


def row_json(layout: Layout, alias: str) -> sql.Composable:
    """The JSONB document of one staged row.

    Untyped columns (usually all of them) go through one `jsonb_object(names, values)` call:
    measured 2.0 s for a million rows against 3.6 s for `to_jsonb` of a row and 4.3 s for
    `jsonb_build_object`, and it takes any column name (long, empty, repeated: the last
    wins). Typed columns need JSON numbers, booleans and nulls, so they are added with
    `jsonb_build_object` (at most 100 arguments a call).
    """
    texts: list[tuple[str, sql.Composable]] = []
    typed: list[sql.Composable] = []
    for i, name in enumerate(layout.names):
        column = sql.SQL("{}.{}").format(sql.Identifier(alias), layout.col(i))
        spec = layout.spec.get(name)
        if spec is None:
            texts.append((name, _json_value(column, None)))
        else:
            typed.append(sql.SQL("{}, {}").format(lit(name), _json_value(column, spec)))
    parts: list[sql.Composable] = []
    if texts:
        parts.append(
            sql.SQL("jsonb_object({}::text[], ARRAY[{}])").format(
                lit([name for name, _ in texts]), sql.SQL(", ").join(v for _, v in texts)
            )
        )
    parts += [
        sql.SQL("jsonb_build_object({})").format(sql.SQL(", ").join(typed[i : i + PAIRS_PER_CALL]))
        for i in range(0, len(typed), PAIRS_PER_CALL)
    ]
    return sql.SQL(" || ").join(parts or [sql.SQL("'{}'::jsonb")])
