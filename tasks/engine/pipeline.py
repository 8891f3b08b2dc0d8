"""The CSV importer: stream a file into a staging table, validate and merge it with set SQL.

Pipeline for one run:
1. `open_source` streams the download (constant memory, size cap, private-address guard).
2. The first record is parsed in Python: it names the columns (or gives their number) and is
   checked for the key column; a file that is obviously not CSV is refused here.
3. Staging (`stage_copy`): the raw bytes go to a TEMP table by `COPY ... FORMAT csv` while
   they are also spooled to a temporary file; if COPY rejects the file (a row with the wrong
   number of fields, a byte that is not in the encoding), the spool is parsed by Python's csv
   module instead, which stages the good rows and marks the bad ones.
4. Validation, repeated keys and the merge are SQL (`validate`): bad rows are reported
   with their line numbers, the last occurrence of a key wins, and only rows whose content
   hash changed are written. Mode sync then deletes the keys the file no longer has.
"""

from __future__ import annotations

import contextvars
import io
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import IO

import psycopg
from django.db import IntegrityError, OperationalError, connection, transaction

from schedules import services
from schedules.models import Dataset, ImportRun, Record, ScheduledImport
from schedules.services import RunCounts, lock_datasets, record_committed_counts

from ..errors import PermanentImportError, RunCancelled, TransientImportError, database_error
from ..fetch import NotModified, Validators, open_source
from . import digest
from . import stage_copy as stage
from . import validate as q

logger = logging.getLogger("importbeat.importer")

PROGRESS_EVERY_SECONDS = 1.0
# Sorting a million keys for the repeated-key check fits in memory rather than spilling.
WORK_MEM = "256MB"

Progress = Callable[[dict[str, int | None]], None]
# The steps a running run shows on the dashboard, by the name `_timed` gives them.
PHASES = {
    "download": "download", "staging": "staging", "analyze": "checks", "merge and commit": "merge",
}  # fmt: skip

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
    services.record_phase(run.pk, "download")
    try:
        dataset = Dataset.objects.get(pk=imp.dataset_id)
    except Dataset.DoesNotExist:
        raise PermanentImportError("the import's dataset was deleted") from None
    try:
        connection.ensure_connection()
        with connection.cursor() as cursor, ExitStack() as stack:
            pg: psycopg.Cursor = cursor.cursor
            pg.execute(q.drop_staging())
            known = _file_it_holds(imp, dataset)
            try:
                raw, reporter.bytes_total = stack.enter_context(
                    open_source(
                        imp.source_url,
                        on_read=reporter.bytes_read,
                        unless=_validators(known) if known else None,
                    )
                )
            except NotModified:
                _keep_source(run, known.file_digest, _validators(known))
                return _unchanged(run, known, counts, "the server says the file is unchanged")
            fetched = digest.DigestingReader(raw)
            source: io.RawIOBase = fetched
            downloaded: IO[bytes] | None = None
            if known is not None:
                # The dataset holds what one file made of it: read the whole download before
                # staging anything, in case it is that file again.
                downloaded = stack.enter_context(stage.new_spool())
                with _timed("download", run):
                    file_digest = digest.download_to(fetched, downloaded, reporter.report_if_due)
                _keep_source(run, file_digest, raw.validators)
                reporter.report()
                if file_digest == known.file_digest:
                    return _unchanged(run, known, counts, "the file has the same digest")
                source = stage.Feed(downloaded.read)
            with _timed("staging", run):
                layout = _stage(pg, imp, source, reporter, counts, downloaded)
            reporter.report()
            if layout is not None:
                if known is None and fetched.at_end:
                    _keep_source(run, fetched.hexdigest(), raw.validators)
                _validate_and_merge(pg, run, layout, counts)
            pg.execute(q.drop_staging())
    except (OperationalError, psycopg.OperationalError) as error:
        raise TransientImportError(database_error(error)) from error
    return counts


def _file_it_holds(imp: ScheduledImport, dataset: Dataset) -> ImportRun | None:
    """The finished run whose file, imported under `imp`'s settings of today, made the dataset
    what it is now; None when there is none (or it is gone, or the settings changed)."""
    if not dataset.applied_digest or dataset.applied_run_id is None:
        return None
    finished = (ImportRun.Status.SUCCEEDED, ImportRun.Status.PARTIAL)
    run = ImportRun.objects.filter(pk=dataset.applied_run_id, status__in=finished).first()
    if run is None or digest.applied_key(imp, run.file_digest) != dataset.applied_digest:
        return None
    return run


def _unchanged(run: ImportRun, known: ImportRun, counts: RunCounts, why: str) -> RunCounts:
    """Importing the file again cannot change the dataset: count what it would count."""
    logger.info(
        "import %s: %s as run %s imported, and the dataset is unchanged since; nothing to write",
        run.scheduled_import_id,
        why,
        known.pk,
    )
    _repeat_counts(known, counts)
    return counts


def _validators(run: ImportRun) -> Validators:
    return Validators(etag=run.source_etag, last_modified=run.source_last_modified)


def _keep_source(run: ImportRun, file_digest: str, validators: Validators) -> None:
    """Note on the run which file it fetched: its digest and the server's validators."""
    facts = {
        "file_digest": file_digest,
        "source_etag": validators.etag,
        "source_last_modified": validators.last_modified,
    }
    for name, value in facts.items():
        setattr(run, name, value)
    ImportRun.objects.filter(pk=run.pk).update(**facts)


def _repeat_counts(applied: ImportRun, counts: RunCounts) -> None:
    """What importing the applied file again would count: every row it landed is unchanged."""
    counts.rows_read = applied.rows_read
    counts.rows_failed = applied.rows_failed
    counts.rows_unchanged = applied.rows_inserted + applied.rows_updated + applied.rows_unchanged
    counts.row_errors = list(applied.error_details.get("rows", []))


def _stage(
    pg: psycopg.Cursor,
    imp: ScheduledImport,
    raw: io.RawIOBase,
    reporter: _ProgressReporter,
    counts: RunCounts,
    downloaded: IO[bytes] | None = None,
) -> q.Layout | None:
    """Stage every row of the file; None for a file without rows or header (nothing to do).

    `downloaded` is the whole file already on disk (what `raw` reads): a file COPY rejects is
    then read again from there instead of being spooled a second time.
    """
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
    with stage.new_spool() if downloaded is None else stage.Discard() as spool:
        spool.write(prefix)
        if not refusal:
            pg.execute(q.create_raw_table(layout, header_lines + 1))
            try:
                staged = stage.copy_raw(
                    pg,
                    layout,
                    imp,
                    data,
                    raw.read,
                    spool,
                    reporter.due,
                    report,
                    first_line=header_lines + 1,
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
        if downloaded is not None:
            downloaded.seek(0)
            source = stage.Feed(downloaded.read)
        else:
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
        # Rows span lines, so LineGuard's check of each line did not bound a row.
        pg.execute(q.first_long_row(layout, stage.max_field_bytes()))
        if (line := pg.fetchone()[0]) is not None:
            raise stage.too_long(f"the row starting on line {line}")
    if layout.width == 1:
        # One column: COPY reads a blank line as a NULL row, the csv module skips it.
        pg.execute(q.sql.SQL("DELETE FROM {} WHERE c1 IS NULL").format(q.sql.Identifier(q.RAW)))
        staged.rows -= pg.rowcount


def _validate_and_merge(
    pg: psycopg.Cursor, run: ImportRun, layout: q.Layout, counts: RunCounts
) -> None:
    """Validate the staged rows and merge the good ones into the dataset."""
    imp = run.scheduled_import
    with _timed("analyze", run):
        # Temp tables are never auto-analyzed. Without statistics the planner guesses that
        # few staged rows pass `problem IS NULL` and probes the records index once per row
        # (measured 4 s for a million) instead of one hash join (1.5 s).
        _analyze(pg, q.RAW, "key", "problem")
    native_checks = pg.connection.info.server_version >= q.NATIVE_INPUT_CHECK_VERSION
    if not native_checks:
        for statement in q.create_input_checks():
            pg.execute(statement)
    with _work_mem(pg), _timed("bad rows", run):
        pg.execute(q.find_bad_rows(layout, native_checks=native_checks))
    _analyze(pg, q.BAD)
    pg.execute(q.any_rows(q.BAD))
    any_bad = bool(pg.fetchone()[0])
    try:
        _merge(pg, run, layout, counts, search_keys=any_bad)
    except _RepeatedKey:
        logger.info("import %s: a key repeats; searching the file for repeated keys", imp.pk)
        _merge(pg, run, layout, counts, search_keys=True)


def _report_failed_rows(
    pg: psycopg.Cursor, run: ImportRun, layout: q.Layout, counts: RunCounts
) -> None:
    """Mark the rows a later row with the same key supersedes; count and list every failed row."""
    with _timed("repeated keys", run):
        pg.execute(q.find_repeated_keys())
    _analyze(pg, q.DUPES)
    pg.execute(q.count_failed_rows())
    counts.rows_failed = pg.fetchone()[0]
    counts.row_errors = []
    if counts.rows_failed:
        pg.execute(q.first_row_errors(layout))
        counts.row_errors = [
            {"line": line, "column": column, "value": value, "reason": reason}
            for line, column, value, reason in pg.fetchall()
        ]


class _RepeatedKey(Exception):
    """A first load met a key twice before the file was searched for repeated keys."""


def _merge(
    pg: psycopg.Cursor,
    run: ImportRun,
    layout: q.Layout,
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
    the search, a sort of every key (1 s a million), and _RepeatedKey says it refused one.
    """
    imp = run.scheduled_import
    record = Record._meta.db_table
    try:
        with _timed("merge and commit", run), _work_mem(pg), transaction.atomic():
            _lock_dataset(imp.dataset_id)
            # The last safe point: a cancel that comes after the commit is too late.
            _stop_if_cancelled(run)
            pg.execute(q.dataset_has_records(record, imp.dataset_id))
            first_load = not pg.fetchone()[0]
            keys_checked = search_keys or not first_load
            if keys_checked:
                _report_failed_rows(pg, run, layout, counts)
            counts.rows_updated = 0
            if not first_load:
                with _timed("changes", run):
                    pg.execute(q.find_changes(record, imp.dataset_id, counts.rows_failed > 0))
                    _analyze(pg, q.CHANGES)
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
            counts.rows_deleted = 0
            if imp.mode == ScheduledImport.Mode.SYNC:
                # Only reached once the whole file was staged: a broken download never
                # deletes.
                pg.execute(q.delete_absent(record, imp.dataset_id))
                counts.rows_deleted = pg.rowcount
            applied = digest.applied_key(imp, run.file_digest) if run.file_digest else ""
            Dataset.objects.filter(pk=imp.dataset_id).update(
                applied_digest=applied, applied_run=run if applied else None
            )
            counts.rows_unchanged = (
                counts.rows_read - counts.rows_failed - counts.rows_inserted - counts.rows_updated
            )
            # The counts commit with the rows: a run whose rows landed is finished from them.
            record_committed_counts(run, counts)
    except (IntegrityError, psycopg.errors.UniqueViolation) as error:
        if not keys_checked:
            raise _RepeatedKey from error
        raise


def _lock_dataset(dataset_id: int) -> None:
    """Hold the dataset row until the merge commits (`services.lock_datasets`).

    Records have no database foreign key (its check ran once per written row); this one lock
    is what that check took a million times: the dataset cannot be deleted under the merge.
    """
    if not lock_datasets([dataset_id]):
        raise PermanentImportError("the import's dataset was deleted during the run")


def _analyze(pg: psycopg.Cursor, table: str, *columns: str) -> None:
    names = q.sql.SQL(", ").join(q.sql.Identifier(c) for c in columns)
    template = "ANALYZE {} ({})" if columns else "ANALYZE {}"
    pg.execute(q.sql.SQL(template).format(q.sql.Identifier(table), names))


@contextmanager
def _timed(step: str, run: ImportRun) -> Iterator[None]:
    # The dashboard's phase, written as the step starts: outside the merge's transaction, so
    # it shows at once.
    if step in PHASES:
        services.record_phase(run.pk, PHASES[step])
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

    def report_if_due(self) -> None:
        if self.due():
            self.report()

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
        _stop_if_cancelled(self.run)


def _stop_if_cancelled(run: ImportRun) -> None:
    """A safe point: nothing of this attempt is committed yet, so stopping here leaves the
    dataset as it was (services.cancel_run)."""
    from schedules.services import cancel_requested

    cancelled = cancel_requested(run.pk)
    if cancelled:
        raise RunCancelled(cancelled)
