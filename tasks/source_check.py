"""Test source (the admin's button): fetch the start of an import's file exactly as a run would
(same fetcher, same private-address rule, same first-record checks) and say what is there,
without writing anything. Runs on a worker, where the imports themselves fetch from."""

from __future__ import annotations

import csv
import io
from typing import Any

from schedules.models import ScheduledImport

from . import fetch
from . import importer_stage as stage
from .errors import ImportFailed

PREVIEW_BYTES = 64 * 1024
PREVIEW_ROWS = 3


def check_source(import_id: int) -> dict[str, Any]:
    """{"ok", "columns", "rows" (the first few), "bytes_total", "problems"}."""
    imp = ScheduledImport.objects.filter(pk=import_id).first()
    if imp is None:
        return _refused("the import no longer exists")
    try:
        with fetch.open_source(imp.source_url) as (stream, length):
            head = _read(stream, PREVIEW_BYTES)
        stage.sniff(head)
        end = stage.first_record_end(head)
        first = stage.parse_first_record(head[:end] if end else head, imp)
        layout = stage.layout_for(first, imp)
    except ImportFailed as error:
        return _refused(str(error))
    return {
        "ok": True,
        "columns": layout.names,
        "rows": _first_rows(head, end, imp, complete=len(head) < PREVIEW_BYTES),
        "bytes_total": length,
        "problems": [],
    }


def _read(stream: io.RawIOBase, limit: int) -> bytes:
    data = b""
    while len(data) < limit:
        chunk = stream.read(limit - len(data))
        if not chunk:
            break
        data += chunk
    return data


def _first_rows(head: bytes, end: int | None, imp: ScheduledImport, complete: bool) -> list:
    body = head[end:] if imp.has_header and end else head
    if not complete:
        # The preview stopped mid-file: leave out the line it cut.
        body = body[: body.rfind(b"\n") + 1]
    text = body.decode(stage.codec_name(imp.encoding), errors="replace")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=imp.delimiter)
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


def _refused(problem: str) -> dict[str, Any]:
    return {"ok": False, "columns": [], "rows": [], "bytes_total": None, "problems": [problem]}
