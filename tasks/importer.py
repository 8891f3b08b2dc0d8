"""The CSV importer: stream a file, validate its rows, stage them with COPY, merge with set SQL.

Pipeline for one run:
1. `open_source` streams the download (constant memory, size cap, private-address guard).
2. `parse_rows` decodes and parses it with the csv module, validating each row against the
   import's columns; bad rows become row errors, good ones (line, key, json, hash) tuples.
3. Those tuples are COPYed into a TEMP staging table (no WAL, one round trip per buffer).
4. `merge` upserts the newest row per key with one statement, skipping rows whose stored
   content hash is equal, and (mode sync) deletes the keys the file no longer has.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from itertools import islice

from django.db import OperationalError, connection, transaction

from schedules.models import ImportRun, Record, ScheduledImport
from schedules.services import RunCounts

from .errors import PermanentImportError, TransientImportError
from .fetch import open_source

ROW_ERROR_CAP = 100
PROGRESS_EVERY_SECONDS = 1.0
# csv's default field limit (128 KiB) is below what real files hold in one cell.
csv.field_size_limit(2**31 - 1)

Progress = Callable[[dict[str, int | None]], None]


@dataclass
class StagedRow:
    line: int
    key: str
    data: str | None  # None: the row was seen but invalid; sync mode must keep its record
    content_hash: str | None


class RowErrors:
    """Counts every bad row; keeps the first ROW_ERROR_CAP of them for the run log."""

    def __init__(self) -> None:
        self.count = 0
        self.kept: list[dict[str, object]] = []

    def add(self, line: int, reason: str, column: str | None = None, value: str | None = None):
        self.count += 1
        if len(self.kept) < ROW_ERROR_CAP:
            self.kept.append(
                {"line": line, "column": column, "value": _clip(value), "reason": reason}
            )


def _clip(value: str | None, limit: int = 200) -> str | None:
    if value is None or len(value) <= limit:
        return value
    return value[:limit] + "…"


# --- values -----------------------------------------------------------------------------------

_TRUE = {"true", "t", "yes", "y", "1"}
_FALSE = {"false", "f", "no", "n", "0"}


def convert(value: str, kind: str) -> object:
    """Turn a CSV cell into the JSON value its column type promises, or raise ValueError."""
    if kind == "text":
        return value
    text = value.strip()
    if kind == "int":
        return int(text)
    if kind == "decimal":
        try:
            number = Decimal(text)
        except InvalidOperation:
            raise ValueError("not a decimal number") from None
        if not number.is_finite():
            raise ValueError("not a finite number")
        return str(number)
    if kind == "bool":
        lowered = text.lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ValueError("not a boolean (true/false, yes/no, 1/0)")
    if kind == "date":
        return date.fromisoformat(text).isoformat()
    if kind == "datetime":
        return datetime.fromisoformat(text).isoformat()
    raise ValueError(f"unknown type {kind}")


# --- parsing ----------------------------------------------------------------------------------


def text_stream(raw: io.RawIOBase, encoding: str) -> io.TextIOWrapper:
    # utf-8-sig drops a BOM when there is one and reads plain UTF-8 otherwise.
    if codecs.lookup(encoding).name == "utf-8":
        encoding = "utf-8-sig"
    return io.TextIOWrapper(io.BufferedReader(raw, 1024 * 1024), encoding=encoding, newline="")


def parse_rows(
    text: io.TextIOBase, imp: ScheduledImport, errors: RowErrors, counts: RunCounts
) -> Iterator[StagedRow]:
    """Yield one StagedRow per data row of the file; bad rows go to `errors`."""
    reader = csv.reader(text, delimiter=imp.delimiter, strict=True)
    spec = {c["name"]: c for c in imp.columns}
    try:
        if imp.has_header:
            header = next(reader, None)
            if header is None:
                return
            header = [name.strip() for name in header]
            _check_header(header, imp)
        else:
            header = list(spec) or []
        key_index = _key_index(header, imp)
        width = len(header)
        previous_line = reader.line_num
        for fields in reader:
            line = previous_line + 1
            previous_line = reader.line_num
            if not fields:
                continue  # csv yields [] for a blank line
            counts.rows_read += 1
            if not header:
                header = [f"column_{i}" for i in range(1, len(fields) + 1)]
                width = len(header)
                key_index = _key_index(header, imp)
            if len(fields) != width:
                errors.add(line, f"expected {width} fields, found {len(fields)}")
                key = fields[key_index].strip() if key_index < len(fields) else ""
                if key:
                    yield StagedRow(line, key, None, None)
                continue
            key = fields[key_index].strip()
            if not key:
                errors.add(line, "the key is empty", imp.key_column, fields[key_index])
                continue
            row, bad = _typed_row(header, fields, spec, line, errors)
            if bad:
                yield StagedRow(line, key, None, None)
                continue
            data = json.dumps(row, ensure_ascii=False, separators=(",", ":"))
            yield StagedRow(line, key, data, hashlib.md5(data.encode()).hexdigest())
    except UnicodeDecodeError as error:
        raise PermanentImportError(
            f"the file is not valid {imp.encoding} near line {reader.line_num + 1} "
            f"({error.reason}); set the import's encoding"
        ) from error
    except csv.Error as error:
        if "NUL" in str(error) or "null byte" in str(error):
            raise PermanentImportError("the file is not a CSV: it holds binary data") from error
        raise PermanentImportError(
            f"the file is not a valid CSV near line {reader.line_num}: {error}"
        ) from error


def _check_header(header: list[str], imp: ScheduledImport) -> None:
    first = ",".join(header).lower()
    if first.startswith(("<!doctype", "<html", "<?xml", "{", "[")):
        raise PermanentImportError("the file is not a CSV (it looks like HTML, XML or JSON)")


def _key_index(header: list[str], imp: ScheduledImport) -> int:
    try:
        return header.index(imp.key_column)
    except ValueError:
        shown = ", ".join(header[:20]) + (" …" if len(header) > 20 else "")
        raise PermanentImportError(
            f"the key column {imp.key_column!r} is not in the file's columns ({shown})"
        ) from None


def _typed_row(
    header: list[str], fields: list[str], spec: dict, line: int, errors: RowErrors
) -> tuple[dict[str, object], bool]:
    row: dict[str, object] = {}
    bad = False
    for name, value in zip(header, fields, strict=True):
        column = spec.get(name)
        if column is None:
            row[name] = value
            continue
        if value.strip() == "":
            if column.get("required"):
                errors.add(line, "a required value is missing", name, value)
                bad = True
            row[name] = None
            continue
        try:
            row[name] = convert(value, column.get("type", "text"))
        except ValueError as error:
            errors.add(line, f"not a valid {column.get('type')}: {error}", name, value)
            bad = True
    for name, column in spec.items():
        if name not in row and column.get("required"):
            errors.add(line, "a required column is missing from the file", name, None)
            bad = True
    return row, bad


# --- loading ----------------------------------------------------------------------------------

STAGING = "importbeat_staging"
COPY_BATCH_ROWS = 20_000


def import_run(run: ImportRun, progress: Progress | None = None) -> RunCounts:
    """Fetch, parse, stage and merge one run's file; return its counts."""
    imp = run.scheduled_import
    counts = RunCounts()
    errors = RowErrors()
    reporter = _ProgressReporter(run, counts, progress)
    try:
        connection.ensure_connection()
        with connection.cursor() as cursor:
            cursor.execute(f"DROP TABLE IF EXISTS {STAGING}")
            cursor.execute(
                f"CREATE TEMP TABLE {STAGING} "
                "(line bigint NOT NULL, key text NOT NULL, data jsonb, content_hash text)"
            )
            with open_source(imp.source_url, on_read=reporter.bytes_read) as (raw, length):
                reporter.bytes_total = length
                rows = parse_rows(text_stream(raw, imp.encoding), imp, errors, counts)
                for batch in batched(rows, COPY_BATCH_ROWS):
                    with cursor.cursor.copy(
                        f"COPY {STAGING} (line, key, data, content_hash) FROM STDIN"
                    ) as copy:
                        for staged in batch:
                            copy.write_row(
                                (staged.line, staged.key, staged.data, staged.content_hash)
                            )
                    # Between COPYs the connection is free for the progress update.
                    reporter.maybe_report()
            reporter.report()
            merge(cursor, run, counts, errors)
            cursor.execute(f"DROP TABLE IF EXISTS {STAGING}")
    except OperationalError as error:
        raise TransientImportError(f"database error: {error}") from error
    counts.rows_failed = errors.count
    counts.row_errors = errors.kept
    return counts


def merge(cursor, run: ImportRun, counts: RunCounts, errors: RowErrors) -> None:
    """Apply the staged file to the dataset in one transaction, with exact counts."""
    imp = run.scheduled_import
    dataset_id = imp.dataset_id
    record = Record._meta.db_table
    cursor.execute(f"CREATE INDEX ON {STAGING} (key, line DESC)")
    cursor.execute(f"ANALYZE {STAGING}")
    # A key repeated within the file: the last occurrence wins, earlier ones are row errors.
    cursor.execute(
        f"""
        SELECT line, key, superseded_by FROM (
            SELECT line, key, max(line) OVER (PARTITION BY key) AS superseded_by
            FROM {STAGING}
        ) t WHERE line < superseded_by ORDER BY line
        """
    )
    for line, key, superseded_by in cursor.fetchall():
        errors.add(line, f"key repeated; superseded by line {superseded_by}", imp.key_column, key)
    with transaction.atomic():
        cursor.execute(
            f"""
            WITH latest AS (
                SELECT DISTINCT ON (key) key, data, content_hash
                FROM {STAGING} ORDER BY key, line DESC
            ),
            changed AS (
                SELECT l.key, l.data, l.content_hash
                FROM latest l
                LEFT JOIN {record} r ON r.dataset_id = %(dataset)s AND r.key = l.key
                WHERE l.data IS NOT NULL
                  AND (r.id IS NULL OR r.content_hash <> l.content_hash)
            ),
            written AS (
                INSERT INTO {record}
                    (dataset_id, key, data, content_hash, first_seen_run_id,
                     last_changed_run_id, created_at, updated_at)
                SELECT %(dataset)s, key, data, content_hash, %(run)s, %(run)s, now(), now()
                FROM changed
                ON CONFLICT (dataset_id, key) DO UPDATE SET
                    data = EXCLUDED.data,
                    content_hash = EXCLUDED.content_hash,
                    last_changed_run_id = EXCLUDED.last_changed_run_id,
                    updated_at = EXCLUDED.updated_at
                RETURNING (xmax = 0) AS inserted
            )
            SELECT
                (SELECT count(*) FROM latest WHERE data IS NOT NULL),
                count(*) FILTER (WHERE inserted),
                count(*) FILTER (WHERE NOT inserted)
            FROM written
            """,
            {"dataset": dataset_id, "run": run.pk},
        )
        valid_keys, inserted, updated = cursor.fetchone()
        counts.rows_inserted = inserted
        counts.rows_updated = updated
        counts.rows_unchanged = valid_keys - inserted - updated
        if imp.mode == ScheduledImport.Mode.SYNC:
            # Only reached once the whole file parsed: a broken download never deletes.
            cursor.execute(
                f"""
                DELETE FROM {record} r
                WHERE r.dataset_id = %s
                  AND NOT EXISTS (SELECT 1 FROM {STAGING} s WHERE s.key = r.key)
                """,
                [dataset_id],
            )
            counts.rows_deleted = cursor.rowcount


def batched(items: Iterator[StagedRow], size: int) -> Iterator[list[StagedRow]]:
    # itertools.batched arrives in Python 3.12; we support 3.11.
    while batch := list(islice(items, size)):
        yield batch


class _ProgressReporter:
    """Writes progress to the run row (and the caller's hook) at most once a second."""

    def __init__(self, run: ImportRun, counts: RunCounts, hook: Progress | None) -> None:
        self.run = run
        self.counts = counts
        self.hook = hook
        self.bytes = 0
        self.bytes_total: int | None = None
        self._last = time.monotonic()

    def bytes_read(self, total: int) -> None:
        self.bytes = total

    def maybe_report(self) -> None:
        if time.monotonic() - self._last >= PROGRESS_EVERY_SECONDS:
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
        if self.hook:
            self.hook(progress)
