"""Read a source from a drop folder (`file:///…` under IMPORT_DROP_DIRS). Filing a file away in
`processed/` after a good run is schedules.processed_files', whichever path ends the run.

The worker reads the folder from its own disk: every worker machine must see the same folder
at the same path (a shared mount). What may be read is schedules.drop_folders' rule, checked
again here because links in the folder can change after the import was saved.
"""

from __future__ import annotations

import bisect
import errno
import logging
import math
import os
import stat
import threading
import time
from collections import OrderedDict
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
        # No link is left in `real`; O_NOFOLLOW refuses one put there since. A folder above it
        # made a link since is seen in what was opened (check_opened).
        fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW)
    except drop_folders.Refused as refused:
        raise PermanentImportError(str(refused)) from None
    except OSError as error:
        raise _open_error(path, error) from error
    try:
        drop_folders.check_opened(fd, path, options.drop_folders)
    except drop_folders.Refused as refused:
        os.close(fd)
        raise PermanentImportError(str(refused)) from None
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
            opened = quiet_version(
                path,
                lambda: _version(os.fstat(file.fileno())),
                _version(info),
                stop_if_asked=options.stop_if_asked,
            )
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
    """The newest file matching the glob (modification time, then the greater name, its numbers
    as numbers); or, when
    its matches are a queue of deliveries (`imported_before`: each is filed away once
    imported), the oldest one no run imported before (then the lesser name).

    Taking the newest of a queue first imports the older ones after it: a backlog of
    deliveries (workers away for three days) ended with the oldest file's values in the
    dataset. A file imported before is still there when it could not be filed away (said on
    its run); it is passed over, and taken again (unchanged) only when nothing else waits.
    """
    if imported_before is not None:
        waiting = _oldest_waiting(where, imported_before)
        if waiting is not None:
            return waiting
    newest = _newest(where)
    if newest is None:
        raise NothingToImport(f"no file matches {where.path} yet")
    return os.path.join(where.folder, newest)


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
        waiting = _oldest_waiting(where, imported_before, lone_too=True)
    except (drop_folders.Refused, TransientImportError, PermanentImportError):
        return None
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


def _newest(where: drop_folders.DropPath) -> str | None:
    """The name of the newest regular file matching the glob (modification time, then the
    greater name), None when none does.

    Only the newest so far is kept while the folder is read, as tasks.sftp's glob does: every
    match was held (its entry and its stat) to take one, 98 MiB a run at 100,000 files (drops
    hunt, finding 2). Names compared as a queue's are (their numbers as numbers): in text
    order, products_9 was taken before products_10 delivered at the same moment."""
    matches = globs.matcher(where.name)
    best: Place | None = None
    newest = None
    for entry in _entries(where):
        if not matches(entry.name) or (info := _file_stat(entry)) is None:
            continue
        if best is not None and info.st_mtime_ns < best[0]:
            continue  # older: its name is not looked at
        place = _place((info.st_mtime_ns, entry.name))
        if best is None or place > best:
            best, newest = place, entry.name
    return newest


def _file_stat(entry: os.DirEntry) -> os.stat_result | None:
    """The entry's state when it is a regular file (a link to one too) still there."""
    try:
        return entry.stat() if entry.is_file() else None
    except OSError:
        return None  # gone since the listing


def _oldest_waiting(
    where: drop_folders.DropPath,
    imported_before: Callable[[list[str]], set[str]],
    lone_too: bool = False,
) -> str | None:
    """The oldest match of the glob whose version no run imported, None when none waits. A
    lone match is not asked about unless `lone_too` (a run takes it whatever its runs: as the
    newest, unchanged, it writes nothing)."""
    queue = _queue(where)
    with queue.lock:
        queue.refresh()
        if len(queue) == 1 and not lone_too:
            return None
        return queue.oldest_waiting(imported_before)


# --- a queue's order, kept between choices -------------------------------------------------------
#
# Each delivery of a queue was chosen by looking at every file waiting: a stat, the resolved
# path and the version of each, ordered anew, and all their versions asked of the database in
# one IN list. A backlog's drain chose that way twice per file, so draining it grew with the
# square of its size: 300 files took under a minute, 10,000 took 1.8 h and 40,000 about a day.
# Now a process keeps each queue's order (_Queue), and one choice costs a listing of the
# folder's names (what arrived or went since; no stat), a look at the few files at the head,
# and one query of those few files' versions. The listing is not skipped when the folder's
# modification time is as it was listed: on an NFS or SMB share a stat answers from the
# client's cache, deliveries written from another host leave it as it was, and the queue took
# the newest of two new deliveries first (review of a cache tried in this round).

# A queue's files are all looked at again this often: a file written again in place keeps its
# inode, and one given an older modification time (`touch -d`) is seen in its new place once
# looked at (a newer one is seen when it reaches the head).
REVALIDATE_SECONDS = 60.0
# Queues kept per process (the least recently chosen goes): each holds a name per file waiting.
QUEUES_KEPT = 16
# The head's files looked at, and their versions asked in one query, at first; then 8 times as
# many while all of those were imported before (files that could not be filed away).
FIRST_LOOK = 8
# A choice looks at the files again at most this often when one it looked at had changed
# since it was placed (written again: it goes to its new place first).
RESTARTS = 3

Place = tuple[int, tuple[tuple[int, int, str], ...]]


def _place(item: tuple[int, str]) -> Place:
    """Where a file, (modification time, name), goes in a queue's order."""
    return item[0], globs.delivery_order(item[1])


class _Queue:
    """The matches of one glob in one folder, in the order a queue takes them: the oldest
    modification time first, then names in their numbers' order (common.globs.delivery_order).

    `order` holds (modification time, name) sorted by `_place`; `known`, for each of its names,
    the inode the listing gives (d_ino, read without a stat), the inode and modification time a
    stat gave, and whether it is a link. `refresh` lists the folder's names and stats only
    those new or replaced since (another inode); `oldest_waiting` looks afresh at the head's
    files alone, and a file changed since it was placed is moved to its new place.
    """

    def __init__(self, where: drop_folders.DropPath) -> None:
        self.where = where
        self.matches = globs.matcher(where.name)
        self.lock = threading.Lock()
        self.known: dict[str, tuple[int, int, int, bool]] = {}
        self.order: list[tuple[int, str]] = []
        self.looked_at = -math.inf

    def __len__(self) -> int:
        return len(self.order)

    def refresh(self) -> None:
        """The order brought up to what the folder holds now (_entries' errors raised)."""
        if time.monotonic() - self.looked_at > REVALIDATE_SECONDS:
            self.known.clear()
            self.order.clear()
            self.looked_at = time.monotonic()
        listed: set[str] = set()
        replaced: dict[str, tuple[int, int, int, bool] | None] = {}
        for entry in _entries(self.where):
            if not self.matches(entry.name):
                continue
            listed.add(entry.name)
            if (seen := self.known.get(entry.name)) is not None and seen[0] == entry.inode():
                continue
            # Looked at while the listing's folder is open: an entry is looked up in it.
            info = _file_stat(entry)
            replaced[entry.name] = None if info is None else (
                entry.inode(), info.st_ino, info.st_mtime_ns, entry.is_symlink()
            )  # fmt: skip
        self._forget(self.known.keys() - listed)
        self._forget(replaced.keys() & self.known.keys())
        added = []
        for name, known in replaced.items():
            if known is not None:
                self.known[name] = known
                added.append((known[2], name))
        self._add(added)

    def oldest_waiting(self, imported_before: Callable[[list[str]], set[str]]) -> str | None:
        """The first file of the order, looked at now, whose version no run imported.

        The head's files are looked at (a stat each) and their versions asked in one query;
        the next ones only while all of those were imported. A file changed since it was
        placed goes to its new place, and the files are looked at again from where they were
        (from the head when it went before them): at most RESTARTS times, then a file is
        taken as its look found it, as one listing would have (a file written all the time).
        """
        restarts, count = RESTARTS, FIRST_LOOK
        after: Place | None = None
        while True:
            at = 0 if after is None else bisect.bisect_right(self.order, after, key=_place)
            batch = self.order[at : at + count]
            if not batch:
                return None
            versions: dict[str, str] = {}
            moved = ahead = False
            for item in batch:
                etag, new_place = self._look(item)
                if etag is None:
                    continue  # gone
                if new_place is not None and restarts:
                    moved = True
                    ahead = ahead or (after is not None and _place(new_place) <= after)
                    continue
                versions[etag] = os.path.join(self.where.folder, item[1])
            if moved:
                restarts -= 1
                if ahead:
                    after, count = None, FIRST_LOOK
                continue
            imported = imported_before(list(versions)) if versions else set()
            for etag, path in versions.items():
                if etag not in imported:
                    return path
            after, count = _place(batch[-1]), count * 8

    def _look(self, item: tuple[int, str]) -> tuple[str | None, tuple[int, str] | None]:
        """The version (drop_folders.file_etag) of the file `item` names as it is now, and its
        new place when it changed since it was placed (moved there). (None, None): gone, or
        no file now (forgotten)."""
        mtime, name = item
        inode, stat_inode, _mtime, is_link = self.known[name]
        path = os.path.join(self.where.folder, name)
        try:
            info = os.stat(path)
            real = os.path.realpath(path) if is_link else path
        except OSError:
            info = None
        if info is None or not stat.S_ISREG(info.st_mode):
            self._forget({name})
            return None, None
        etag = drop_folders.file_etag(real, info)
        if info.st_ino == stat_inode and info.st_mtime_ns == mtime:
            return etag, None
        self._forget({name})
        self.known[name] = (inode, info.st_ino, info.st_mtime_ns, is_link)
        self._add([(info.st_mtime_ns, name)])
        return etag, (info.st_mtime_ns, name)

    def _forget(self, names: set[str]) -> None:
        if not names:
            return
        if len(names) > 32:
            for name in names:
                del self.known[name]
            self.order = [item for item in self.order if item[1] in self.known]
            return
        for name in names:
            mtime = self.known.pop(name)[2]
            at = bisect.bisect_left(self.order, _place((mtime, name)), key=_place)
            if at < len(self.order) and self.order[at][1] == name:
                del self.order[at]

    def _add(self, items: list[tuple[int, str]]) -> None:
        if len(items) > 32:
            self.order.extend(items)
            self.order.sort(key=_place)
            return
        for item in items:
            bisect.insort(self.order, item, key=_place)


_queues: OrderedDict[tuple[str, str], _Queue] = OrderedDict()
_queues_lock = threading.Lock()


def _queue(where: drop_folders.DropPath) -> _Queue:
    """This process's queue of `where`'s glob in its folder (refreshed under its lock)."""
    with _queues_lock:
        queue = _queues.pop((where.folder, where.name), None)
        if queue is None:
            queue = _Queue(where)
        _queues[where.folder, where.name] = queue
        while len(_queues) > QUEUES_KEPT:
            _queues.popitem(last=False)
    return queue


def _entries(where: drop_folders.DropPath) -> Iterator[os.DirEntry]:
    """The folder's entries, read as they are used (errors in words: _open_error).

    Listed through the folder opened, and only when that is the folder `where` resolved: a
    folder above it swapped for a link since (drop_folders.open_folder) listed another user's
    names, and chose one of theirs."""
    try:
        fd = drop_folders.open_folder(where.folder)
    except FileNotFoundError:
        raise TransientImportError(f"the folder {where.folder} does not exist (yet)") from None
    except drop_folders.Refused as refused:
        raise PermanentImportError(str(refused)) from None
    except OSError as error:
        raise _open_error(where.folder, error) from error
    try:
        with os.scandir(fd) as entries:
            yield from entries
    except OSError as error:
        raise _open_error(where.folder, error) from error
    finally:
        os.close(fd)


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
