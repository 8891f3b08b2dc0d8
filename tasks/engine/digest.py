"""The digest shortcut: recognise a file that is already imported, and write nothing.

An import's result is a function of the file, the settings that turn its bytes into records
and the dataset it merges into. When the dataset still holds exactly what importing a file
produced (nothing has written to it since, see `Dataset.applied_digest`), importing the same
file with the same settings again writes nothing and counts what that run counted; so the run
skips straight to the counts once the downloaded bytes hash the same (SHA-256).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from collections.abc import Callable
from typing import IO

from schedules.models import Dataset, ImportRun, ScheduledImport
from schedules.services import RunCounts

from ..fetch import CHUNK_BYTES, Validators

logger = logging.getLogger("importbeat.importer")


# Bump whenever the importer turns the same file into different records (a new JSON rule,
# a new hash): a digest from before then must not vouch for today's result.
IMPORTER_FORMAT = 2


def settings_fingerprint(imp: ScheduledImport) -> bytes:
    """Everything besides the bytes that decides what an import of a file writes.

    The source and the zip member are in it: a run of an import whose URL or member changed
    sent the old file's validators to the new one, and a server answering 304 (or a zip that
    had not changed) made the run "unchanged" without a byte of the new file read."""
    shaping = {
        "format": IMPORTER_FORMAT,
        "source_url": imp.source_url,
        "source_member": imp.source_member or "",
        "delimiter": imp.delimiter,
        "encoding": imp.encoding,
        "has_header": imp.has_header,
        "key_column": imp.key_column,
        "columns": imp.columns or [],
        "mode": imp.mode,
    }
    return json.dumps(shaping, sort_keys=True).encode() + b"\0"


def applied_key(imp: ScheduledImport, file_digest: str) -> str:
    """What `Dataset.applied_digest` holds after `imp` merged the file with this digest."""
    return hashlib.sha256(settings_fingerprint(imp) + file_digest.encode()).hexdigest()


def file_it_holds(imp: ScheduledImport, dataset: Dataset) -> ImportRun | None:
    """The finished run whose file, imported under `imp`'s settings of today, made the dataset
    what it is now; None when there is none (or it is gone, or the settings changed)."""
    if not dataset.applied_digest or dataset.applied_run_id is None:
        return None
    finished = (ImportRun.Status.SUCCEEDED, ImportRun.Status.PARTIAL)
    run = ImportRun.objects.filter(pk=dataset.applied_run_id, status__in=finished).first()
    if run is None or applied_key(imp, run.file_digest) != dataset.applied_digest:
        return None
    return run


def still_applied(dataset: Dataset, known: ImportRun) -> bool:
    """Whether the dataset is still what `known`'s file made of it, now: another import may
    have merged into it while this run fetched its file (the note read before the download
    took a dataset changed meanwhile for unchanged, and the run wrote nothing)."""
    return Dataset.objects.filter(
        pk=dataset.pk, applied_run_id=known.pk, applied_digest=dataset.applied_digest
    ).exists()


class DigestingReader(io.RawIOBase):
    """Reads through `raw`, hashing every byte; `hexdigest()` is the file's SHA-256 at the end."""

    def __init__(self, raw: io.RawIOBase) -> None:
        self._raw = raw
        self._hash = hashlib.sha256()
        self.at_end = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        size = self._raw.readinto(buffer)
        if size:
            self._hash.update(memoryview(buffer)[:size])
        else:
            self.at_end = True
        return size

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


def download_to(source: DigestingReader, spool: IO[bytes], on_chunk: Callable[[], None]) -> str:
    """Copy the whole download into `spool` (rewound afterwards); return its digest."""
    while chunk := source.read(CHUNK_BYTES):
        spool.write(chunk)
        on_chunk()
    spool.seek(0)
    return source.hexdigest()


def keep_source(run: ImportRun, file_digest: str, validators: Validators) -> None:
    """Note on the run which file it fetched: its digest and the server's validators.

    Noted on the object (RUN_NOTES): written with the next progress report, with the counts
    the run's rows commit with (beside the dataset's `applied_run`), or with its end.
    """
    run.file_digest = file_digest
    run.source_etag = validators.etag
    run.source_last_modified = validators.last_modified


def unchanged(run: ImportRun, known: ImportRun, counts: RunCounts, why: str) -> RunCounts:
    """Importing the file again cannot change the dataset: count what it would count."""
    logger.info(
        "import %s: %s as run %s imported, and the dataset is unchanged since; nothing to write",
        run.scheduled_import_id,
        why,
        known.pk,
    )
    _repeat_counts(known, counts)
    return counts


def _repeat_counts(applied: ImportRun, counts: RunCounts) -> None:
    """What importing the applied file again would count: every row it landed is unchanged."""
    counts.rows_read = applied.rows_read
    counts.rows_failed = applied.rows_failed
    counts.rows_unchanged = applied.rows_inserted + applied.rows_updated + applied.rows_unchanged
    counts.row_errors = list(applied.error_details.get("rows", []))
