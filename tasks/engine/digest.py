"""Recognising a file that is already imported: the SHA-256 of its bytes, combined with the
settings that turn them into records.

An import's result is a function of the file, those settings and the dataset it merges into.
When the dataset still holds exactly what importing a file produced (nothing has written to it
since, see `Dataset.applied_digest`), importing the same file with the same settings again
writes nothing and counts what that run counted; so the run can skip straight to the counts
once the downloaded bytes hash the same.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable
from typing import IO

from schedules.models import ScheduledImport

from ..fetch import CHUNK_BYTES

# Bump whenever the importer turns the same file into different records (a new JSON rule,
# a new hash): a digest from before then must not vouch for today's result.
IMPORTER_FORMAT = 2


def settings_fingerprint(imp: ScheduledImport) -> bytes:
    """Everything besides the bytes that decides what an import of a file writes."""
    shaping = {
        "format": IMPORTER_FORMAT,
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
