"""The CSV importer: stream a file into a staging table, validate and merge it with set SQL.

Pipeline for one run:
1. `open_source` streams the download (constant memory, size cap, private-address guard).
2. The first record is parsed in Python: it names the columns (or gives their number) and is
   checked for the key column; a file that is obviously not CSV is refused here.
3. Staging (`importer_stage`): the raw bytes go to a TEMP table by `COPY ... FORMAT csv` while
   they are also spooled to a temporary file; if COPY rejects the file (a row with the wrong
   number of fields, a byte that is not in the encoding), the spool is parsed by Python's csv
   module instead, which stages the good rows and marks the bad ones.
4. Validation, repeated keys and the merge are SQL (`importer_sql`): bad rows are reported
   with their line numbers, the last occurrence of a key wins, and only rows whose content
   hash changed are written. Mode sync then deletes the keys the file no longer has.
"""

from __future__ import annotations

import contextvars
import io
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import psycopg
from django.db import IntegrityError, OperationalError, connection, transaction

from schedules.models import Dataset, ImportRun, Record, ScheduledImport
from schedules.services import RunCounts

from . import importer_sql as q
from . import importer_stage as stage
from .errors import PermanentImportError, TransientImportError
from .fetch import open_source

logger = logging.getLogger("importbeat.importer")

PROGRESS_EVERY_SECONDS = 1.0
# Sorting a million keys for the repeated-key check fits in memory rather than spilling.
WORK_MEM = "256MB"

Progress = Callable[[dict[str, int | None]], None]

# Extra progress listeners for this context (the `run_import` command's progress bar), so
# that a caller of `runner.execute` can watch a run without a parameter threaded through.
_listeners: contextvars.ContextVar[tuple[Progress, ...]] = contextvars.ContextVar(
    "importbeat_progress_listeners", default=()
)


@contextmanager
def listen(hook: Progress) -> Iterator[None]:
    """Call `hook(progress)` for every progress report of imports run inside this block."""
    token = _listeners.set((*_listeners.get(), hook))
    try:
        yield
    finally:
        _listeners.reset(token)


def import_run(run: ImportRun, progress: Progress | None = None) -> RunCounts:
    """Fetch, stage, validate and merge one run's file; return its counts."""
    imp = run.scheduled_import
    counts = RunCounts()
    reporter = _ProgressReporter(run, counts, progress)
    try:
        connection.ensure_connection()
        with connection.cursor() as cursor:
            pg: psycopg.Cursor = cursor.cursor
            pg.execute(q.drop_staging())
            with open_source(imp.source_url, on_read=reporter.bytes_read) as (raw, length):
                reporter.bytes_total = length
                with _timed("staging", run):
                    layout = _stage(pg, imp, raw, reporter, counts)
            reporter.report()
            if layout is not None:
                _validate_and_merge(pg, run, layout, counts)
            pg.execute(q.drop_staging())
    except (OperationalError, psycopg.OperationalError) as error:
        raise TransientImportError(f"database error: {error}") from error
    return counts


def _stage(
    pg: psycopg.Cursor,
    imp: ScheduledImport,
    raw: io.RawIOBase,
    reporter: _ProgressReporter,
    counts: RunCounts,
) -> q.Layout | None:
    """Stage every row of the file; None for a file without rows or header (nothing to do)."""
    prefix, end = stage.read_prefix(raw.read)
    if not prefix.strip():
        if imp.has_header:
            raise PermanentImportError("the file is empty: it has no header row")
        return None
    if stage.codec_name(imp.encoding) == "utf-8" and prefix.startswith(stage.BOM):
        prefix = prefix[len(stage.BOM) :]
        end = end - len(stage.BOM) if end is not None else None
    stage.sniff(prefix)
    first_record = prefix[:end] if end is not None else prefix
    layout = stage.layout_for(stage.parse_first_record(first_record, imp), imp)
    header_lines = first_record.count(b"\n") if imp.has_header else 0
    data = prefix[len(first_record) :] if imp.has_header else prefix

    def report(rows: int) -> None:
        counts.rows_read = rows
        reporter.report()

    refusal = stage.fast_path_refusal(imp, first_record)
    with stage.new_spool() as spool:
        spool.write(prefix)
        if not refusal:
            pg.execute(q.create_raw_table(layout, header_lines + 1))
            try:
                staged = stage.copy_raw(
                    pg, layout, imp, data, raw.read, spool, reporter.due, report
                )
            except stage.CopyRejected as rejected:
                refusal = f"COPY rejected the file ({rejected})"
            else:
                _settle_fast_path(pg, layout, staged)
                counts.rows_read = staged.rows
                return layout
        logger.info("import %s: parsing in Python: %s", imp.pk, refusal)
        pg.execute(q.drop_staging())
        pg.execute(q.create_raw_table(layout, 1))
        spool.seek(0)
        # The spool holds what was read so far; the rest still comes from the download.
        source = stage.Feed(lambda size: spool.read(size) or raw.read(size))
        staged = stage.copy_parsed(pg, layout, imp, source, reporter.due, report)
        counts.rows_read = staged.rows
    return layout


def _settle_fast_path(pg: psycopg.Cursor, layout: q.Layout, staged: stage.Staged) -> None:
    """Fix what COPY cannot know: line numbers after multi-line fields, blank lines."""
    physical_lines = staged.line_feeds + 1 if staged.rows else 0
    if physical_lines != staged.rows:
        pg.execute(q.renumber_lines(layout))
    if layout.width == 1:
        # One column: COPY reads a blank line as a NULL row, the csv module skips it.
        pg.execute(q.sql.SQL("DELETE FROM {} WHERE c1 IS NULL").format(q.sql.Identifier(q.RAW)))
        staged.rows -= pg.rowcount


def _validate_and_merge(
    pg: psycopg.Cursor, run: ImportRun, layout: q.Layout, counts: RunCounts
) -> None:
    imp = run.scheduled_import
    with _timed("analyze", run):
        # Temp tables are never auto-analyzed. Without statistics the planner guesses that
        # few staged rows pass `problem IS NULL` and probes the records index once per row
        # (measured 4 s for a million) instead of one hash join (1.5 s).
        _analyze(pg, q.RAW, "key", "problem")
    with _work_mem(pg):
        with _timed("bad rows", run):
            pg.execute(q.find_bad_rows(layout))
        with _timed("repeated keys", run):
            pg.execute(q.find_repeated_keys())
    pg.execute(q.count_failed_rows())
    counts.rows_failed = pg.fetchone()[0]
    if counts.rows_failed:
        pg.execute(q.first_row_errors(layout))
        counts.row_errors = [
            {"line": line, "column": column, "value": value, "reason": reason}
            for line, column, value, reason in pg.fetchall()
        ]
    _analyze(pg, q.BAD)
    _analyze(pg, q.DUPES)
    record = Record._meta.db_table
    pg.execute(q.dataset_has_records(record, imp.dataset_id))
    first_load = not pg.fetchone()[0]
    if not first_load:
        with _timed("changes", run), _work_mem(pg):
            pg.execute(q.find_changes(record, imp.dataset_id, counts.rows_failed > 0))
            _analyze(pg, q.CHANGES)
    try:
        with _timed("write and commit", run), _work_mem(pg), transaction.atomic():
            _lock_dataset(pg, imp.dataset_id)
            if not first_load:
                pg.execute(q.update_changed(layout, record, run.pk))
                counts.rows_updated = pg.rowcount
            pg.execute(
                q.insert_new(
                    layout,
                    record,
                    imp.dataset_id,
                    run.pk,
                    first_load=first_load,
                    any_failed=counts.rows_failed > 0,
                )
            )
            counts.rows_inserted = pg.rowcount
            if imp.mode == ScheduledImport.Mode.SYNC:
                # Only reached once the whole file was staged: a broken download never
                # deletes.
                pg.execute(q.delete_absent(record, imp.dataset_id))
                counts.rows_deleted = pg.rowcount
    except (IntegrityError, psycopg.errors.UniqueViolation) as error:
        raise TransientImportError(
            "another import wrote the same keys of this dataset at the same time; "
            f"will retry ({error})"
        ) from error
    counts.rows_unchanged = (
        counts.rows_read - counts.rows_failed - counts.rows_inserted - counts.rows_updated
    )


def _lock_dataset(pg: psycopg.Cursor, dataset_id: int) -> None:
    pg.execute(q.lock_dataset(Dataset._meta.db_table, dataset_id))
    if pg.fetchone() is None:
        raise PermanentImportError("the import's dataset was deleted during the run")


def _analyze(pg: psycopg.Cursor, table: str, *columns: str) -> None:
    names = q.sql.SQL(", ").join(q.sql.Identifier(c) for c in columns)
    template = "ANALYZE {} ({})" if columns else "ANALYZE {}"
    pg.execute(q.sql.SQL(template).format(q.sql.Identifier(table), names))


@contextmanager
def _timed(step: str, run: ImportRun) -> Iterator[None]:
    # Per-step timings at DEBUG: where a slow import spends its time.
    started = time.perf_counter()
    yield
    logger.debug("run %s: %s took %.3fs", run.pk, step, time.perf_counter() - started)


@contextmanager
def _work_mem(pg: psycopg.Cursor) -> Iterator[None]:
    pg.execute(q.sql.SQL("SET work_mem = {}").format(q.sql.Literal(WORK_MEM)))
    try:
        yield
    finally:
        pg.execute("RESET work_mem")


class _ProgressReporter:
    """Writes progress to the run row (and the hooks) at most once a second."""

    def __init__(self, run: ImportRun, counts: RunCounts, hook: Progress | None) -> None:
        self.run = run
        self.counts = counts
        self.hooks = (*([hook] if hook else []), *_listeners.get())
        self.bytes = 0
        self.bytes_total: int | None = None
        self._last = time.monotonic()

    def bytes_read(self, total: int) -> None:
        self.bytes = total

    def due(self) -> bool:
        return time.monotonic() - self._last >= PROGRESS_EVERY_SECONDS

    def report(self) -> None:
        from schedules.services import record_progress

        self._last = time.monotonic()
        progress = {
            "bytes_read": self.bytes,
            "bytes_total": self.bytes_total,
            "rows_read": self.counts.rows_read,
        }
        record_progress(self.run.pk, **progress)
        for hook in self.hooks:
            hook(progress)
