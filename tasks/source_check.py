"""Test source (the admin's button): fetch the start of an import's file exactly as a run would
(same fetcher, same private-address rule, same first-record checks) and say what is there,
without writing anything. Runs on a worker, where the imports themselves fetch from."""

from __future__ import annotations

import codecs
import csv
import io
import logging
import time
from contextlib import suppress
from dataclasses import replace
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from django.db import DatabaseError, InterfaceError, OperationalError, connection

from common import error_words
from schedules import credentials, unsaved_checks
from schedules.models import ScheduledImport, host_key_fingerprint
from schedules.source_check import CHECK_FIELDS, fetch_seconds, out_of_time

from . import crashes, decompress, fetch
from .engine import csv_reading
from .engine import first_record as stage
from .errors import ImportFailed, RunCancelled
from .source_options import SourceOptions, source_options
from .transcode import wide_encoding_of

logger = logging.getLogger(__name__)

PREVIEW_BYTES = 64 * 1024
PREVIEW_ROWS = 3


DELIMITERS = ",;\t|"
EXPIRED = "the check expired before a worker took it; try again"


def check_source(import_id: int) -> dict[str, Any]:
    """A saved import's source (the admin's Test source)."""
    try:
        imp = ScheduledImport.objects.filter(pk=import_id).first()
    except (OperationalError, InterfaceError) as error:
        # A database the worker cannot reach, or one with no free connection, said as such:
        # the page said "an unexpected error on the worker" (clients hunt).
        with suppress(DatabaseError):
            connection.close()
        words = error_words.unreachable("importbeat's database", error, logger)
        return _refused(f"the worker {words}; try again in a moment")
    if imp is None:
        return _refused("the import no longer exists")
    return inspect_source(imp)


def check_fields(key: str) -> dict[str, Any]:
    """An import not saved yet (`POST /imports/check`, `?dry_run=true`): the same check, of the
    fields its caller left under `key` (schedules.unsaved_checks), taken once."""
    fields = unsaved_checks.take(key)
    if fields is None:
        return _refused(EXPIRED)
    return inspect_source(ScheduledImport(**{k: v for k, v in fields.items() if k in CHECK_FIELDS}))


def inspect_source(imp: ScheduledImport) -> dict[str, Any]:
    """{"ok", "columns", "rows" (the first few), "bytes_total", "key_column_found",
    "missing_required_columns", "problems", "suggestions"}: what a run would find.

    The answer is a task's result (kept by the result backend, shown by Flower, logged by the
    worker): no secret of the import's credential is in it, even where the source repeats one
    (a server that writes the request's headers into the file), nor in what Celery keeps of
    an unexpected error (crashes.secrets_hidden)."""
    with crashes.secrets_hidden(imp):
        try:
            found = _inspect(imp)
        except SoftTimeLimitExceeded:
            # The task's soft limit (schedules.source_check.time_limits): stuck where the
            # deadline cannot end it, a DNS lookup or a connect.
            found = _refused(out_of_time())
        return credentials.hide(credentials.secrets_of(imp.credential_secret), found)


class OutOfTime(RunCancelled):
    """The check's deadline passed. A RunCancelled: what a download's watchdog ends a silent
    download on (tasks.fetch_watchdog)."""


class Deadline:
    """SOURCE_CHECK_FETCH_SECONDS from now, the longest a check waits for its source (the page
    that asked waits SOURCE_CHECK_WAIT_SECONDS): raises OutOfTime once past. A run's fetch
    waits up to FETCH_READ_TIMEOUT_SECONDS for one answer; a check that did sat on its worker
    slot until its task's time limit, and the page had given up before with "no worker
    answered".

    Asked by the download's watchdog once a second while the source sends nothing (its
    `stop_if_asked`, which shuts the connection down), and at each read (a source that drips)."""

    def __init__(self, seconds: float | None = None) -> None:
        self.at = time.monotonic() + (fetch_seconds() if seconds is None else seconds)

    def __call__(self, _bytes_read: int = 0) -> None:
        if time.monotonic() > self.at:
            raise OutOfTime(out_of_time())


def _inspect(imp: ScheduledImport) -> dict[str, Any]:
    shown: dict[str, str] = {}
    head = b""
    deadline = Deadline()
    try:
        options = replace(_options(imp, shown), stop_if_asked=deadline)
        with fetch.open_source(imp.source_url, deadline, options=options) as (stream, length):
            shown["source_file"] = stream.source_file
            head = decompress.read_up_to(stream, PREVIEW_BYTES)
        stage.sniff(head)
    except ImportFailed as error:
        wide = wide_encoding_of(head)
        return _refused(str(error), {"encoding": wide} if wide else None, shown)
    try:
        stage.refuse_a_utf8_mark(head, imp)
        if head.startswith(stage.BOM) and stage.codec_name(imp.encoding) == "utf-8":
            # As a run reads it: the mark is no part of the first column's name ("\ufeffsku"
            # was said not to be the key column `sku`).
            head = head[len(stage.BOM) :]
    except ImportFailed as error:
        return _refused(str(error), {"encoding": "utf-8"}, shown)
    suggestions: dict[str, str] = {}
    # As a run reads it (first_record.read_prefix): blank lines before the header are not it.
    # The check took the first of them for a header naming no column.
    lead = len(head) - len(head.lstrip(b"\r\n"))
    after = stage.first_record_end(head[lead:])
    end = lead + after if after is not None else None
    try:
        first = stage.parse_first_record(head[:end] if end else head, imp)
    except ImportFailed as error:
        encoding = _guess_encoding(head)
        if encoding and encoding != imp.encoding:
            suggestions["encoding"] = encoding
        return _refused(str(error), suggestions, shown)
    problems: list[str] = []
    try:
        columns = stage.layout_for(first, imp).names
    except ImportFailed as error:
        problems.append(str(error))
        columns = [name.strip() for name in first] if imp.has_header else []
    required = [c["name"] for c in imp.columns or [] if c.get("required")]
    missing = [name for name in required if name not in columns]
    if problems:
        delimiter = _guess_delimiter(head, imp)
        if delimiter and delimiter != imp.delimiter:
            suggestions["delimiter"] = delimiter
            problems.append(
                f"the file looks separated by {delimiter!r}, not {imp.delimiter!r}: "
                f"set the import's delimiter to {delimiter!r}"
            )
    return {
        "ok": not problems,
        "columns": columns,
        "rows": _first_rows(head, end, imp, complete=len(head) < PREVIEW_BYTES),
        "bytes_total": length,
        "key_column_found": imp.key_column in columns,
        "missing_required_columns": missing,
        "problems": problems,
        "suggestions": suggestions,
        **shown,
    }


def _options(imp: ScheduledImport, shown: dict[str, str]) -> SourceOptions:
    """The import's fetch options, noting the SFTP host key the check met: pinned on a saved
    import with none yet (the first check pins it), shown for one not saved."""
    options = source_options(imp)

    def pin(offered: str) -> str:
        pinned = options.pin_host_key(offered) if options.pin_host_key else offered
        shown["host_key_fingerprint"] = host_key_fingerprint(pinned)
        return pinned

    if imp.sftp_host_key:
        shown["host_key_fingerprint"] = host_key_fingerprint(imp.sftp_host_key)
    return replace(options, pin_host_key=pin, whole=False)


def _guess_delimiter(head: bytes, imp: ScheduledImport) -> str | None:
    """The separator of the first lines, as csv.Sniffer reads them (None when it cannot tell)."""
    try:
        text = head[:16384].decode(stage.codec_name(imp.encoding), errors="replace")
        return csv.Sniffer().sniff(text, delimiters=DELIMITERS).delimiter
    except (csv.Error, ImportFailed):
        return None


def _guess_encoding(head: bytes) -> str | None:
    """UTF-8 when the bytes are, a UTF-16 byte-order mark when there is one, else cp1252 (the
    usual spreadsheet export); None when nothing fits."""
    if wide := wide_encoding_of(head):
        return wide
    for encoding in ("utf-8", "cp1252"):
        try:
            # Not final: the preview may end inside a character.
            codecs.getincrementaldecoder(encoding)().decode(head, final=False)
        except UnicodeDecodeError:
            continue
        return encoding
    return None


def _first_rows(head: bytes, end: int | None, imp: ScheduledImport, complete: bool) -> list:
    body = head[end:] if imp.has_header and end else head
    if not complete:
        # The preview stopped mid-file: leave out the line it cut.
        body = body[: body.rfind(b"\n") + 1]
    text = body.decode(stage.codec_name(imp.encoding), errors="replace")
    reader = csv_reading.reader(
        io.StringIO(text, newline=""), imp.delimiter, stage.max_field_bytes()
    )
    rows = []
    try:
        for row in reader:
            if row:
                rows.append(row)
            if len(rows) == PREVIEW_ROWS:
                break
    except csv.Error:
        pass  # a preview shows what parses; the run reports the bad rows with their lines
    return rows


def _refused(
    problem: str, suggestions: dict[str, str] | None = None, shown: dict[str, str] | None = None
) -> dict[str, Any]:
    return {
        **(shown or {}),
        "ok": False,
        "columns": [],
        "rows": [],
        "bytes_total": None,
        "key_column_found": False,
        "missing_required_columns": [],
        "problems": [problem],
        "suggestions": suggestions or {},
    }
