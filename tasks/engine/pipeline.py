"""One import run, from top to bottom: the steps a file takes, each in its own module.

1. fetch (`fetch`): `tasks.fetch.open_source` streams the download (constant memory, size
   cap, private-address guard); a request is conditional when the dataset holds a file the
   server described.
2. digest shortcut (`digest`): when the dataset holds what one file made of it, the whole
   download is spooled and hashed first; the same file under the same settings writes nothing
   and repeats that run's counts.
3. first record and staging (`first_record`, `stage`, `stage_copy`, `stage_python`): the first
   record names the columns; the raw bytes go to a TEMP table by COPY, or, when COPY rejects
   the file, through Python's csv module, which marks the bad rows.
4. validation (`validate`): bad rows and repeated keys, with their line numbers, in SQL.
5. merge (`merge`): only new and changed rows are written, in one transaction that also
   commits the run's counts; mode sync deletes the keys the file no longer has.
"""

from __future__ import annotations

import errno
import io
import logging
from contextlib import ExitStack
from typing import IO

import psycopg
from django.db import OperationalError, connection

from schedules.models import Dataset, ImportRun
from schedules.services import RunCounts

from ..errors import (
    PermanentImportError,
    TransientImportError,
    beyond_database_limits,
    database_error,
    worker_disk_full,
)
from . import digest, fetch, merge, stage, validate
from .first_record import Layout
from .progress import Progress, ProgressReporter, timed
from .tables import drop_leftovers, release_staging

logger = logging.getLogger("importbeat.importer")

# The server said the file was the one applied last, but another import merged into the
# dataset while this run asked: its file must be read again, whole.
CHANGED_MEANWHILE = (
    "another import wrote to the dataset while this run asked for its file; the run is tried "
    "again to read the file whole"
)


def import_run(run: ImportRun, progress: Progress | None = None) -> RunCounts:
    """Fetch, stage, validate and merge one run's file; return its counts."""
    imp = run.scheduled_import
    counts = RunCounts()
    reporter = ProgressReporter(run, counts, progress)
    reporter.step("download")
    try:
        # Loaded with the run when the runner did (select_related), read here otherwise.
        dataset = imp.dataset
    except Dataset.DoesNotExist:
        raise PermanentImportError("the import's dataset was deleted") from None
    try:
        connection.ensure_connection()
        with connection.cursor() as cursor, ExitStack() as stack:
            pg: psycopg.Cursor = cursor.cursor
            drop_leftovers(pg)
            # 1. fetch
            known = digest.file_it_holds(imp, dataset)
            try:
                raw, reporter.bytes_total = stack.enter_context(
                    fetch.open_file(run, reporter, known)
                )
            except fetch.NotModified:
                if not digest.still_applied(dataset, known):
                    raise TransientImportError(CHANGED_MEANWHILE) from None
                digest.keep_source(run, known.file_digest, fetch.validators_of(known))
                return digest.unchanged(run, known, counts, "the server says the file is unchanged")
            fetched = digest.DigestingReader(raw)
            source: io.RawIOBase = fetched
            downloaded: IO[bytes] | None = None
            # 2. the digest shortcut
            if known is not None:
                # The dataset holds what one file made of it: read the whole download before
                # staging anything, in case it is that file again.
                downloaded = stack.enter_context(stage.new_spool())
                with timed("download", run):
                    file_digest = digest.download_to(fetched, downloaded, reporter.report_if_due)
                digest.keep_source(run, file_digest, raw.validators)
                reporter.report()
                if file_digest == known.file_digest and digest.still_applied(dataset, known):
                    return digest.unchanged(run, known, counts, "the file has the same digest")
                # (a new file, or the same one while another import merged into the dataset
                # meanwhile: it goes through the merge, and the dataset ends as it says)
                source = stage.Feed(downloaded.read)
            # 3. first record and staging
            reporter.step("staging")
            with timed("staging", run):
                layout = stage.stage_file(pg, imp, source, reporter, counts, downloaded)
            reporter.report()
            if known is None and fetched.at_end:
                # An empty file too: a queue's delivery that could not be filed away is passed
                # over by its version (processed_files.imported_before); without it an empty
                # one was taken again at every tick, and the deliveries after it never.
                digest.keep_source(run, fetched.hexdigest(), raw.validators)
            if layout is not None:
                # 4. validation and 5. merge
                _validate_and_merge(pg, run, layout, counts, reporter)
            release_staging(pg, counts.rows_read)
    except (OperationalError, psycopg.OperationalError) as error:
        raise beyond_database_limits(error) or database_error(error) from error
    except OSError as error:
        if error.errno == errno.ENOSPC:
            raise worker_disk_full(error) from error
        raise
    return counts


def _validate_and_merge(
    pg: psycopg.Cursor,
    run: ImportRun,
    layout: Layout,
    counts: RunCounts,
    reporter: ProgressReporter,
) -> None:
    """Validate the staged rows and merge the good ones into the dataset."""
    reporter.step("checks")
    any_bad = validate.check_rows(pg, run, layout, counts.rows_read)
    reporter.step("merge")
    try:
        merge.merge_staged(pg, run, layout, counts, search_keys=any_bad)
    except merge.RepeatedKey:
        logger.info(
            "import %s: a key repeats; searching the file for repeated keys",
            run.scheduled_import_id,
        )
        merge.merge_staged(pg, run, layout, counts, search_keys=True)
