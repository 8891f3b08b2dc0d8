"""Compressed sources: a gzip file or a zip archive holding one CSV, read as the CSV itself.

Recognised by their first bytes, whatever the name or the server says: a `.csv.gz` that an HTTP
server already decoded (Content-Encoding: gzip) is plain CSV by then. The size cap counts the
bytes decompression produces, so a small file that expands without end (a "zip bomb") stops at
MAX_IMPORT_BYTES with memory flat: both formats are decompressed a buffer at a time.

A zip keeps its table of contents at its end, and Python's zipfile needs to seek: the archive
is spooled to a temporary file first (its own bytes count against the cap as they arrive, and
progress follows them), then its one member is streamed out of it.
"""

from __future__ import annotations

import gzip
import io
import shutil
import tempfile
import zipfile
import zlib
from contextlib import ExitStack
from typing import IO

from django.conf import settings

from .errors import PermanentImportError

GZIP_MAGIC = b"\x1f\x8b"
ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a local file header; an empty archive's end record
SPOOL_CHUNK_BYTES = 1024 * 1024
SHOWN_MEMBERS = 20
# What archivers add besides the files: folders, and macOS's resource forks.
IGNORED_PREFIX = "__MACOSX/"


def decompressed(stream: io.RawIOBase, stack: ExitStack, member: str = "") -> io.RawIOBase:
    """`stream` itself when it is not compressed; otherwise a reader of what it holds, with the
    same `validators` and `source_file`, capped at MAX_IMPORT_BYTES decompressed bytes."""
    head = read_up_to(stream, 4)
    whole = _Prefixed(head, stream)
    if head.startswith(GZIP_MAGIC):
        inner: IO[bytes] = gzip.GzipFile(fileobj=whole, mode="rb")
        kind = "gzip"
    elif head.startswith(ZIP_MAGIC):
        inner = _zip_member(whole, stack, member)
        kind = "zip"
    else:
        kind = ""
    if member and kind != "zip":
        # It was read as it came: a file other than the one the import named could land.
        raise PermanentImportError(
            f"the import names {member!r} inside a zip file (source_member), but the download"
            f" is {'a gzip file' if kind else 'not a zip file'}: clear source_member to read"
            " it as it is"
        )
    if not kind:
        return whole if head else stream
    stack.callback(inner.close)
    return Capped(inner, kind, stream)


class Capped(io.RawIOBase):
    """The decompressed bytes, counted against the cap; errors of the format in plain words."""

    def __init__(self, inner: IO[bytes], kind: str, source: io.RawIOBase) -> None:
        self._inner = inner
        self.kind = kind  # "gzip" or "zip"
        self.max_bytes = settings.MAX_IMPORT_BYTES
        self.bytes_out = 0
        self.validators = getattr(source, "validators", None)
        self.source_file = getattr(source, "source_file", "")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        try:
            data = self._inner.read(len(buffer))
        except (OSError, EOFError, zlib.error, zipfile.BadZipFile) as error:
            raise PermanentImportError(self._damaged(error)) from error
        self.bytes_out += len(data)
        if self.bytes_out > self.max_bytes:
            raise PermanentImportError(
                f"the file expands to more than the {self.max_bytes}-byte limit "
                f"(MAX_IMPORT_BYTES) when decompressed"
            )
        buffer[: len(data)] = data
        return len(data)

    def _damaged(self, error: BaseException) -> str:
        if isinstance(error, EOFError):
            return f"the {self.kind} file ends early: it is truncated"
        if "CRC" in str(error):
            return f"the {self.kind} file is damaged: a checksum does not match"
        return f"the {self.kind} file is damaged and cannot be decompressed"


def _zip_member(whole: io.RawIOBase, stack: ExitStack, member: str) -> IO[bytes]:
    spool = stack.enter_context(tempfile.TemporaryFile(prefix="importbeat-zip-"))  # noqa: SIM115 (closed by the stack)
    shutil.copyfileobj(whole, spool, SPOOL_CHUNK_BYTES)
    spool.seek(0)
    try:
        archive = stack.enter_context(zipfile.ZipFile(spool))
    except (zipfile.BadZipFile, OSError) as error:
        raise PermanentImportError(
            "the zip file is damaged: its table of contents is unreadable"
        ) from error
    except UnicodeDecodeError as error:
        # A name flagged UTF-8 that is not: zipfile's error quoted the name's bytes.
        raise PermanentImportError(
            "the zip file is damaged: a file name in it is marked UTF-8 but is not"
        ) from error
    files = [
        info
        for info in archive.infolist()
        if not info.is_dir() and not info.filename.startswith(IGNORED_PREFIX)
    ]
    info = _choose(files, member)
    if info.flag_bits & 0x1:
        raise PermanentImportError(f"{info.filename} in the zip file is encrypted")
    try:
        return archive.open(info)
    except NotImplementedError as error:
        raise PermanentImportError(
            f"{info.filename} in the zip file uses a compression method importbeat cannot read"
        ) from error
    except (zipfile.BadZipFile, OSError) as error:
        raise PermanentImportError(f"{info.filename} in the zip file is damaged") from error


def _choose(files: list[zipfile.ZipInfo], member: str) -> zipfile.ZipInfo:
    """The one member to read: the one there is, or the one the import names."""
    names = [info.filename for info in files]
    shown = ", ".join(names[:SHOWN_MEMBERS]) + (
        f", … ({len(names)} in all)" if len(names) > SHOWN_MEMBERS else ""
    )
    if member:
        for info in files:
            if info.filename == member:
                return info
        raise PermanentImportError(
            f"the zip file holds no {member!r} (source_member); it holds: {shown or 'nothing'}"
        )
    if not files:
        raise PermanentImportError("the zip file is empty")
    if len(files) > 1:
        raise PermanentImportError(
            f"the zip file holds {len(files)} files: {shown}; name the one to import in the "
            f"import's source_member"
        )
    return files[0]


def read_up_to(stream: io.RawIOBase, size: int) -> bytes:
    """The next `size` bytes (fewer at the end): a read may give less than it was asked."""
    head = b""
    while len(head) < size:
        chunk = stream.read(size - len(head))
        if not chunk:
            break
        head += chunk
    return head


class _Prefixed(io.RawIOBase):
    """The bytes `read_up_to` took, then the rest of the stream: the stream as if never peeked."""

    def __init__(self, head: bytes, rest: io.RawIOBase) -> None:
        self._head = head
        self._rest = rest
        self.validators = getattr(rest, "validators", None)
        self.source_file = getattr(rest, "source_file", "")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self._head:
            size = min(len(buffer), len(self._head))
            buffer[:size] = self._head[:size]
            self._head = self._head[size:]
            return size
        return self._rest.readinto(buffer)
