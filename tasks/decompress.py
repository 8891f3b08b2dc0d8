"""Compressed sources: a gzip file or a zip archive holding one CSV, read as the CSV itself.

Recognised by their first bytes, whatever the name or the server says: a `.csv.gz` that an HTTP
server already decoded (Content-Encoding: gzip) is plain CSV by then. The size cap counts the
bytes decompression produces, so a small file that expands without end (a "zip bomb") stops at
MAX_IMPORT_BYTES with memory flat: both formats are decompressed a buffer at a time.

A zip keeps its table of contents at its end, and Python's zipfile needs to seek: the archive
is spooled to a temporary file first (its own bytes count against the cap as they arrive, and
progress follows them), then its one member is streamed out of it. Its table of contents is
measured from the spool before zipfile reads it: zipfile makes a Python object of every entry
listed, so a zip listing millions of them is refused first (MAX_ZIP_ENTRIES).
"""

from __future__ import annotations

import gzip
import io
import shutil
import struct
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
# zipfile loads a zip's whole table of contents, an object per entry, before any is looked at:
# ~300 KB on the wire (a gzipped zip listing one entry 2,000,000 times) made a worker hold
# 648 MB, and the byte cap allowed ~21 million entries (hunt). One member is ever read, so a zip
# listing more entries than this, or a table of contents larger, is refused before it is loaded.
MAX_ZIP_ENTRIES = 10_000
MAX_ZIP_DIRECTORY_BYTES = 4 * 1024 * 1024
# The records at a zip's end that say where its table of contents is (APPNOTE.TXT 4.3.14-16),
# and one entry of the table (4.3.12), as zipfile reads them.
END_RECORD = struct.Struct("<4s4H2LH")
END_RECORD_SIGNATURE = b"PK\x05\x06"
END_RECORD64 = struct.Struct("<4sQ2H2L4Q")
END_RECORD64_SIGNATURE = b"PK\x06\x06"
LOCATOR64 = struct.Struct("<4sLQL")
LOCATOR64_SIGNATURE = b"PK\x06\x07"
DIRECTORY_ENTRY = struct.Struct("<4s4B4HL2L5H2L")
DIRECTORY_ENTRY_SIGNATURE = b"PK\x01\x02"
# How far before the end zipfile looks for the end record: an archive comment is < 64 KiB.
END_SEARCH_BYTES = 1 << 16


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
    _refuse_a_large_directory(spool)
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


def _refuse_a_large_directory(spool: IO[bytes]) -> None:
    """Refuse a zip whose table of contents is too large to load, measured where zipfile will
    read it. zipfile reads as many entries as the table's size holds, whatever count the end
    record gives, so both are checked, and the entries are counted in the table (its size
    bounded first)."""
    found = _directory(spool)
    if found is None:
        return  # no end record: zipfile says the archive is damaged
    declared, start, size = found
    if declared <= MAX_ZIP_ENTRIES and size <= MAX_ZIP_DIRECTORY_BYTES:
        spool.seek(start)
        declared = _count_entries(spool.read(size))
    if declared > MAX_ZIP_ENTRIES:
        raise PermanentImportError(
            f"the zip archive lists {declared:,} files (at most {MAX_ZIP_ENTRIES:,}): importbeat"
            f" reads one CSV from a zip, so send that file alone or in a zip of its own"
        )
    if size > MAX_ZIP_DIRECTORY_BYTES:
        raise PermanentImportError(
            f"the zip archive's table of contents is {size:,} bytes (at most"
            f" {MAX_ZIP_DIRECTORY_BYTES:,}): importbeat reads one CSV from a zip, so send that"
            f" file alone or in a zip of its own"
        )


def _directory(spool: IO[bytes]) -> tuple[int, int, int] | None:
    """(entries declared, start, size) of the zip's table of contents, from its end record
    (the zip64 one when present), found as zipfile finds it (`zipfile._EndRecData`): the last
    22 bytes, else the last signature among them and the 64 KiB comment before. None when
    there is none."""
    spool.seek(0, io.SEEK_END)
    length = spool.tell()
    tail_start = max(length - END_RECORD.size - END_SEARCH_BYTES, 0)
    spool.seek(tail_start)
    tail = spool.read()
    at = len(tail) - END_RECORD.size
    last = tail[at:] if at >= 0 else b""
    if not (last.startswith(END_RECORD_SIGNATURE) and last.endswith(b"\0\0")):
        at = tail.rfind(END_RECORD_SIGNATURE)
        if at < 0 or at + END_RECORD.size > len(tail):
            return None
    # The entries on all disks, the table's size (its offset is not read: zipfile reads the
    # table just before the end records, wherever a zip appended to another file puts it).
    _, _, _, _, declared, size, _, _ = END_RECORD.unpack_from(tail, at)
    records_start = tail_start + at
    zip64 = _zip64_record(spool, records_start)
    if zip64 is not None:
        declared, size = zip64[7], zip64[8]
        records_start -= LOCATOR64.size + END_RECORD64.size
    return declared, max(records_start - size, 0), size


def _zip64_record(spool: IO[bytes], where: int) -> tuple | None:
    """The zip64 end record whose locator sits just before the end record at `where`, read
    where zipfile reads it (right before the locator)."""
    if where < LOCATOR64.size + END_RECORD64.size:
        return None
    spool.seek(where - LOCATOR64.size - END_RECORD64.size)
    data = spool.read(END_RECORD64.size + LOCATOR64.size)
    if LOCATOR64.unpack_from(data, END_RECORD64.size)[0] != LOCATOR64_SIGNATURE:
        return None
    record = END_RECORD64.unpack_from(data)
    return record if record[0] == END_RECORD64_SIGNATURE else None


def _count_entries(directory: bytes) -> int:
    """How many entries zipfile will make of the table `directory` (it stops, and says the
    archive is damaged, where an entry's signature is wrong)."""
    count = at = 0
    while at + DIRECTORY_ENTRY.size <= len(directory):
        entry = DIRECTORY_ENTRY.unpack_from(directory, at)
        if entry[0] != DIRECTORY_ENTRY_SIGNATURE:
            break
        count += 1
        at += DIRECTORY_ENTRY.size + entry[12] + entry[13] + entry[14]
    return count


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
