"""Read a source from a drop folder (`file:///…` under IMPORT_DROP_DIRS). Filing a file away in
`processed/` after a good run is schedules.processed_files', whichever path ends the run.

The worker reads the folder from its own disk: every worker machine must see the same folder
at the same path (a shared mount). What may be read is schedules.drop_folders' rule, checked
again here because links in the folder can change after the import was saved.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from email.utils import formatdate

from django.conf import settings

from common import globs
from schedules import drop_folders

from .byte_stream import CHUNK_BYTES, ByteStream, NotModified, Validators
from .errors import NothingToImport, PermanentImportError, TransientImportError
from .source_options import SourceOptions
from .whole_file import FileVersion, check_whole, quiet_version

logger = logging.getLogger("importbeat.drop_folder")


@contextmanager
def open_file(
    url: str,
    on_read: Callable[[int], None] | None = None,
    unless: Validators | None = None,
    options: SourceOptions | None = None,
) -> Iterator[tuple[ByteStream, int]]:
    """Yield (byte stream, file size) for the file `url` names (a glob's newest match, or the
    oldest waiting of a queue of deliveries: `_match`).

    The file's size and modification time stand in for an HTTP server's validators: with
    `unless` naming the same ones, NotModified is raised and nothing is read.
    """
    options = options or SourceOptions()
    try:
        where = drop_folders.locate(url, options.drop_folders)
    except drop_folders.Refused as refused:
        raise PermanentImportError(str(refused)) from None
    path = _match(where, options.imported_before) if where.is_glob else where.path
    # The file taken alone: an older match named so is no concern of this run.
    refuse_unnamed(os.path.basename(path), os.path.dirname(path))
    try:
        real = drop_folders.check_inside(path, options.drop_folders)
        # No link is left in `real`; O_NOFOLLOW refuses one put there since.
        fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW)
    except drop_folders.Refused as refused:
        raise PermanentImportError(str(refused)) from None
    except OSError as error:
        raise _open_error(path, error) from error
    with os.fdopen(fd, "rb") as file:
        info = os.fstat(file.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise PermanentImportError(f"{path} is not a regular file")
        if options.on_source_file:
            options.on_source_file(path)
        validators = file_validators(real, info)
        if unless is not None and unless.etag == validators.etag:
            raise NotModified
        opened = None
        if options.whole:
            opened = quiet_version(path, lambda: _version(os.fstat(file.fileno())), _version(info))
        stream = ByteStream(_chunks(file, path, opened), settings.MAX_IMPORT_BYTES, on_read)
        stream.validators = validators
        stream.source_file = path
        yield stream, info.st_size


def file_validators(path: str, info: os.stat_result) -> Validators:
    """Size, modification time and path: a different file, or this one rewritten, differs."""
    return Validators(
        etag=drop_folders.file_etag(path, info),
        last_modified=formatdate(info.st_mtime, usegmt=True),
    )


def _match(
    where: drop_folders.DropPath, imported_before: Callable[[list[str]], set[str]] | None
) -> str:
    """The newest file matching the glob (modification time, then the greater name); or, when
    its matches are a queue of deliveries (`imported_before`: each is filed away once
    imported), the oldest one no run imported before (then the lesser name).

    Taking the newest of a queue first imports the older ones after it: a backlog of
    deliveries (workers away for three days) ended with the oldest file's values in the
    dataset. A file imported before is still there when it could not be filed away (said on
    its run); it is passed over, and taken again (unchanged) only when nothing else waits.
    """
    found = _matches(where)
    if not found:
        raise NothingToImport(f"no file matches {where.path} yet")
    newest = os.path.join(where.folder, max(found)[1])
    if imported_before is None or len(found) == 1:
        return newest
    return _oldest_waiting(where, found, imported_before) or newest


def next_delivery(
    url: str, imported_before: Callable[[list[str]], set[str]], folders: list[str] | None = None
) -> str | None:
    """The delivery the next run of a queue (a glob with move_processed) would take, None when
    every file matching it was imported before (or none does, or the folder cannot be read:
    that run would say so).

    PermanentImportError when that delivery's name is no UTF-8, as that run would fail
    (refuse_unnamed): queueing it wrote the name into the history's JSON, which PostgreSQL
    refused, and the worker's log gave SQL for the reason."""
    try:
        where = drop_folders.locate(url, folders)
        if not where.is_glob:
            return None
        found = _matches(where)
    except (drop_folders.Refused, TransientImportError, PermanentImportError):
        return None
    waiting = _oldest_waiting(where, found, imported_before) if found else None
    if waiting is not None:
        refuse_unnamed(os.path.basename(waiting), where.folder)
    return waiting


def refuse_unnamed(name: str, folder: str) -> None:
    """A delivery whose name is no UTF-8 (a Latin-1 name, say) cannot be named in its run, nor
    filed away by that name: refused in words (it failed every run as an unexpected error)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        shown = os.fsencode(name).decode("utf-8", "backslashreplace")
        raise PermanentImportError(
            f"the file {shown} in {folder} has a name that is not UTF-8 text: rename it "
            "(a run records the name of the file it imports)"
        ) from None


def _matches(where: drop_folders.DropPath) -> dict[tuple[int, str], os.stat_result]:
    """The regular files matching the glob, by (modification time, name)."""
    try:
        entries = list(os.scandir(where.folder))
    except FileNotFoundError:
        raise TransientImportError(f"the folder {where.folder} does not exist (yet)") from None
    except OSError as error:
        raise _open_error(where.folder, error) from error
    found: dict[tuple[int, str], os.stat_result] = {}
    for entry in entries:
        if not globs.matches(entry.name, where.name):
            continue
        try:
            if not entry.is_file():
                continue
            info = entry.stat()
        except OSError:
            continue  # gone since the listing
        found[info.st_mtime_ns, entry.name] = info
    return found


def _oldest_waiting(
    where: drop_folders.DropPath,
    found: dict[tuple[int, str], os.stat_result],
    imported_before: Callable[[list[str]], set[str]],
) -> str | None:
    """The oldest of `found` that no run imported (one query for them all)."""
    # Each delivery's version as its run records it (file_validators: the resolved path).
    queue: dict[str, str] = {}
    for key in sorted(found, key=lambda key: (key[0], globs.delivery_order(key[1]))):
        path = os.path.join(where.folder, key[1])
        queue[path] = drop_folders.file_etag(os.path.realpath(path), found[key])
    imported = imported_before(list(queue.values()))
    return next((path for path, etag in queue.items() if etag not in imported), None)


def _chunks(file, path: str, opened: FileVersion | None) -> Iterator[bytes]:
    """The file to its end, which must be the file's whole (tasks.whole_file) unless `opened`
    is None (a preview)."""
    read = 0
    while True:
        try:
            data = file.read1(CHUNK_BYTES)
        except OSError as error:
            raise TransientImportError(f"reading {path} failed: {_words(error)}") from error
        if not data:
            if opened is not None:
                check_whole(path, opened, read, lambda: _version(os.fstat(file.fileno())))
            return
        read += len(data)
        yield data


def _version(info: os.stat_result) -> FileVersion:
    return FileVersion(size=info.st_size, mtime=info.st_mtime_ns / 1e9)


def _open_error(path: str, error: OSError) -> Exception:
    """A file not delivered yet is worth another try; one the worker may not read is not."""
    if error.errno == errno.ENOENT:
        return TransientImportError(f"{path} does not exist (yet)")
    if error.errno == errno.ELOOP:
        return PermanentImportError(f"{path} is a link, which drop folders do not follow")
    if error.errno in (errno.EACCES, errno.EPERM):
        return PermanentImportError(f"the worker may not read {path} (permission denied)")
    if error.errno == errno.EISDIR:
        return PermanentImportError(f"{path} is a folder, not a file")
    return TransientImportError(f"cannot open {path}: {_words(error)}")


def _words(error: OSError) -> str:
    return (error.strerror or "input/output error").lower()
