"""A drop folder's file, once a run has used it, is filed away in `processed/` beside it, so
that the next tick of a glob import takes the next delivery instead of the same file again.

services.finish_run calls this once its end of a good run (`succeeded` or `partial`) has
committed, whichever path ends the run: the worker's own finish, a redelivery or the sweep
finishing a run whose rows committed before its worker was lost, a time limit or a failure
after the commit, the cancel of a retry whose rows had committed (it ends as they did). Only
the call that ends the run gets here, so a file is moved at most once (a file delivered later
under the same name stays for its own run).
"""

from __future__ import annotations

import errno
import logging
import os
import re
import stat
from collections.abc import Iterator
from contextlib import contextmanager, suppress

from django.db import DatabaseError, connection
from django.utils import timezone

from common import globs

from . import drop_folders
from .models import ImportRun, ProcessedFolder, ScheduledImport

logger = logging.getLogger("importbeat.drop_folder")

PROCESSED = "processed"
NO_HARD_LINKS = (errno.EPERM, errno.EXDEV, errno.ENOTSUP, errno.EOPNOTSUPP)
# A run that committed its rows has used its file; one that failed leaves it for the next run.
PROCESSED_STATUSES = (ImportRun.Status.SUCCEEDED, ImportRun.Status.PARTIAL)


def move_processed(imp: ScheduledImport, run: ImportRun) -> str:
    """Move the run's file to `processed/` beside it (a name taken there gets a suffix).

    Returns the new path, "" when nothing was moved. Never fails the run, which is finished
    already: a file that cannot be moved is logged and said on the run (not_moved).
    """
    if not (imp.move_processed and run.source_file and run.status in PROCESSED_STATUSES):
        return ""
    if not drop_folders.is_file_url(imp.source_url):
        return ""
    source = run.source_file
    try:
        folders = drop_folders.folders_of(imp.owner)
        real = drop_folders.check_inside(source, folders)
        if _rewritten_since_read(real, run):
            logger.warning("run=%s: %r not moved to %s: %s", run.pk, source, PROCESSED, REWRITTEN)
            not_moved(run, REWRITTEN)
            return ""
        # Beside the delivery as the run found it: a delivery that is a link is filed away
        # itself, not the file it leads to (which the owner keeps elsewhere, and which
        # retention would have deleted with processed/), in a folder of the owner's.
        delivery_folder = drop_folders.check_inside(os.path.dirname(source), folders)
        target_folder = os.path.join(delivery_folder, PROCESSED)
        with (
            _opened_folder(delivery_folder, folders) as here,
            _opened_folder(target_folder, folders, inside=here) as folder,
        ):
            remember(target_folder)
            name = _free_name(os.path.basename(source), here, folder)
            _stamp(name, folder)
    except (OSError, drop_folders.Refused) as error:
        logger.warning("run=%s: %r not moved to %s: %s", run.pk, source, PROCESSED, error)
        not_moved(run, _why(error))
        return ""
    target = os.path.join(target_folder, name)
    logger.info("run=%s: %r moved to %r", run.pk, source, target)
    return target


LINKED = (
    f"{PROCESSED} in the drop folder is a link: files are filed away only into a folder of its own"
)


@contextmanager
def _opened_folder(path: str, folders: list[str], inside: int | None = None) -> Iterator[int]:
    """`path` opened as a folder, never through a link: its descriptor, which every step of
    the move works in. A `processed` that the owner made a link to another user's drop folder
    (theirs to write: it is where their deliveries land) had each delivery filed there, and
    that user's next run imported it as their own.

    `inside`: the open folder `path` is made in (when missing) and looked up in, by its last
    part. What was opened must lie in `folders` (drop_folders.check_opened): a folder above
    the delivery swapped for a link after its check filed another user's delivery away."""
    name = path if inside is None else os.path.basename(path)
    if inside is not None:
        # A folder already, or a file or a link (said below).
        with suppress(FileExistsError):
            os.mkdir(name, dir_fd=inside)
    try:
        fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=inside)
    except OSError as error:
        if error.errno in (errno.ELOOP, errno.ENOTDIR) and _is_link(name, inside):
            raise drop_folders.Refused(LINKED) from error
        raise
    try:
        drop_folders.check_opened(fd, path, folders)
        yield fd
    finally:
        os.close(fd)


def _is_link(name: str, inside: int | None) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=inside, follow_symlinks=False).st_mode)
    except OSError:
        return False


# Filing it away would take a delivery no run has read out of the next run's way.
REWRITTEN = "it was written again after the run read it, and that version waits for the next run"


def _rewritten_since_read(real: str, run: ImportRun) -> bool:
    """True when the file at the run's path is no longer the version the run read (a new
    delivery under the same name, or more of one still being written)."""
    if not run.source_etag.startswith("file:"):
        return False
    return drop_folders.file_etag(real, os.stat(real, follow_symlinks=False)) != run.source_etag


def say_held_back(imp: ScheduledImport, run: ImportRun) -> int:
    """A queue's delivery (a glob with move_processed) whose run failed stays where it is, and
    the next run takes it again: the deliveries after it wait behind it. Say so on the failed
    run, with how many; their number is returned (0: nothing said).

    A file a run imported before (one that could not be filed away) waits for nothing: the
    queue passes over it. Counted, a folder that could not be filed into said "4 later
    deliveries wait" of 3 files imported long ago and 1 delivery."""
    if not (imp.move_processed and run.source_file and run.status == ImportRun.Status.FAILED):
        return 0
    try:
        where = drop_folders.locate(imp.source_url, drop_folders.folders_of(imp.owner))
        if not where.is_glob:
            return 0
        versions = _versions_beside(where, run.source_file)
    except (OSError, drop_folders.Refused):
        return 0  # the run says what failed; the folder's own trouble is the next run's
    waiting = len(versions - imported_before(imp.pk, list(versions))) if versions else 0
    if not waiting:
        return 0
    deliveries = "1 later delivery waits" if waiting == 1 else f"{waiting} later deliveries wait"
    note = f"the next run takes this file again, and {deliveries} behind it"
    _add_note(run, note, waiting_behind=waiting)
    return waiting


def _versions_beside(where: drop_folders.DropPath, taken: str) -> set[str]:
    """The versions (drop_folders.file_etag) of the files matching `where`'s glob but the file
    `taken`, as the queue takes them (tasks.drop_folder): a delivery that is a link is the
    file it leads to, and was not counted."""
    matches = globs.matcher(where.name)
    versions = set()
    # Listed through the folder opened, when it is the folder resolved (a folder above it
    # swapped for a link since counted another user's files).
    fd = drop_folders.open_folder(where.folder)
    try:
        with os.scandir(fd) as entries:
            for entry in entries:
                path = os.path.join(where.folder, entry.name)
                if not matches(entry.name) or path == taken:
                    continue
                try:
                    if not entry.is_file():
                        continue
                    real = os.path.realpath(path) if entry.is_symlink() else path
                    versions.add(drop_folders.file_etag(real, entry.stat()))
                except OSError:
                    continue  # gone since the listing
    finally:
        os.close(fd)
    return versions


# The versions among a list that runs of one import imported, in one statement whatever the
# list's length (one array, not a placeholder per version).
_IMPORTED_SQL = (
    f"SELECT DISTINCT source_etag FROM {ImportRun._meta.db_table}"
    " WHERE scheduled_import_id = %s AND source_etag = ANY(%s) AND status = ANY(%s)"
)


def imported_before(import_id: int, etags: list[str]) -> set[str]:
    """The versions among `etags` (drop_folders.file_etag) that a run of the import imported:
    files of a glob's queue that could not be filed away, which the queue passes over."""
    if not etags:
        return set()
    with connection.cursor() as cursor:
        cursor.execute(
            _IMPORTED_SQL, [import_id, list(etags), [s.value for s in PROCESSED_STATUSES]]
        )
        return {etag for (etag,) in cursor.fetchall()}


def remember(folder: str) -> None:
    """List `folder` for retention before a file goes in, so that every file a run files away
    lies in a listed folder and is deleted in its time even once no import files there any more
    (tasks.processed_retention). After makedirs: retention forgets a listed folder it finds gone.
    """
    try:
        ProcessedFolder.objects.bulk_create(
            [ProcessedFolder(path=folder, seen_at=timezone.now())],
            update_conflicts=True,
            unique_fields=["path"],
            update_fields=["seen_at"],
        )
    except (DatabaseError, ValueError) as error:
        # The move goes on: the folder is still cleaned while an import files into it.
        logger.warning("%s not listed for retention (%s): its files are deleted in their time "
                       "only while an import files into it", folder, error)  # fmt: skip


def _stamp(name: str, folder: int) -> None:
    """Date the filed file at its move: retention counts a processed file's age from then
    (PROCESSED_FILE_RETENTION_DAYS, tasks.processed_retention), and a link or a rename keeps
    the time it was written, which a partner's copy (`rsync -t`, `cp -p`) may set years back:
    such a file would go at the next retention, minutes after its run."""
    try:
        os.utime(name, dir_fd=folder, follow_symlinks=False)
    except OSError as error:
        logger.warning("%r: its time was not set to the move's (%s): retention dates it by "
                       "its own", name, _why(error))  # fmt: skip


def not_moved(run: ImportRun, why: str) -> None:
    """Say on the finished run that its file stayed where it was, and what that means: the
    next run takes the same file again (an unchanged one then writes nothing). Before, only
    the worker's log said so, and every later tick re-read the same file without a word."""
    note = (
        f"its file was not moved to {PROCESSED}/ ({why}): the next run of the import takes it again"
    )
    _add_note(run, note, not_moved=why)


def _add_note(run: ImportRun, note: str, **details: object) -> None:
    """`note` after the finished run's message, `details` in its error_details."""
    run.error_message = f"{run.error_message}; {note}" if run.error_message else note
    run.error_details = {**run.error_details, **details}
    ImportRun.objects.filter(pk=run.pk).update(
        error_message=run.error_message, error_details=run.error_details
    )


def _why(error: BaseException) -> str:
    if isinstance(error, FileExistsError | NotADirectoryError):
        return f"{PROCESSED} in the drop folder is a file, not a folder"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror.lower()
    return str(error)


def _free_name(base: str, here: int, folder: int) -> str:
    """Move the file `base` of the folder `here` into `folder` under its name, or, when that is
    taken, under the name with the next number after the highest there (name-1, name-2, …).

    A feed delivered every minute under one name leaves tens of thousands of such names within
    the retention: the next number is read off one listing of the folder, not found by trying
    every name from 1, and there is no limit to run into. Another worker filing a file of the
    same name at the same moment takes a number first; the next one is tried.
    """
    stem, dot, suffix = base.partition(".")
    if (target := _link_or_rename(base, here, base, folder)) is not None:
        return target
    number = _highest_number(folder, stem, dot + suffix)
    while True:
        number += 1
        target = _link_or_rename(base, here, f"{stem}-{number}{dot}{suffix}", folder)
        if target is not None:
            return target


def _highest_number(folder: int, stem: str, extension: str) -> int:
    """The highest N of the names `stem-N<extension>` in `folder`, 0 when there is none."""
    numbered = re.compile(rf"{re.escape(stem)}-([0-9]+){re.escape(extension)}")
    with os.scandir(folder) as entries:
        found = (numbered.fullmatch(entry.name) for entry in entries)
        return max((int(match.group(1)) for match in found if match), default=0)


def _link_or_rename(source: str, here: int, target: str, folder: int) -> str | None:
    """`source` in the folder `here` moved to `target` in `folder`, which it never overwrites;
    None when `target` is taken. A link is moved itself, never followed.

    A hard link cannot replace an existing file (rename would, silently), so two workers never
    overwrite each other's processed files; the original name goes once the link exists.
    """
    try:
        os.link(source, target, src_dir_fd=here, dst_dir_fd=folder, follow_symlinks=False)
    except FileExistsError:
        return None
    except OSError as error:
        # A share without hard links (some SMB mounts): rename, after a look first.
        if error.errno not in NO_HARD_LINKS:
            raise
        try:
            os.stat(target, dir_fd=folder, follow_symlinks=False)
            return None
        except FileNotFoundError:
            pass
        os.rename(source, target, src_dir_fd=here, dst_dir_fd=folder)
        return target
    try:
        os.unlink(source, dir_fd=here)
    except OSError:
        # Not moved, then: the link goes too, or every run left one more copy in processed/
        # of a file still waiting in the drop folder (one the worker may add to, not delete
        # from).
        os.unlink(target, dir_fd=folder)
        raise
    return target
