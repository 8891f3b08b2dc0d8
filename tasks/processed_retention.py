"""Retention of drop-folder files filed away in `processed/` (schedules.processed_files).

A folder fed hourly would otherwise keep every delivery of every year, until its disk is full.
The hourly retention job (tasks.maintenance.delete_old_runs) deletes the files there older than
PROCESSED_FILE_RETENTION_DAYS, dated by their move (processed_files sets the time then).

Which folders: every `processed/` folder a run filed a file into (listed in ProcessedFolder
before the file goes in), and the one beside the source of each import with `move_processed`
on, as its folder resolves now (files filed before the list existed). So an import deleted, its
`move_processed` turned off or its source moved does not leave its files there for ever.

Why this deletes nothing importbeat did not file away:
- A folder is walked only if importbeat files into it now or a run filed into it once; a
  `processed/` folder of someone else's, even in a drop folder, is never listed. One found gone
  is forgotten (when nothing was filed there since the job began), so a folder made again later
  by someone else at the same place is not cleaned unless a run files into it again.
- Only regular files and links directly in it go: never the drop folder's own files, never a
  folder (nor what is inside one), and a link is deleted itself, by its own age (a delivery
  that was a link is filed away as the link), never followed: the file it leads to stays, and
  a `processed` that is a link is left alone. The folder is opened once without
  following a link, and each file is deleted by its name in that open folder, so a folder
  swapped for a link meanwhile is not followed either.
- Never outside IMPORT_DROP_DIRS: a listed folder whose drop folder is no longer in them (the
  setting changed, or a link now leads out) is left alone, said in the log, and kept listed,
  to be cleaned again if the operator lists its folder again.

Runs on a worker, which has the folders read-write (the web process has them read-only). What
was deleted is logged file by file; what could not be, with the reason, and the last job's
figures wait in Redis for `/metrics` (importbeat_processed_files_not_deleted) and `/health`
(degraded), so a folder the workers may not write to is seen before its disk fills.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from datetime import datetime

from django.conf import settings
from django.utils import timezone
from redis.exceptions import RedisError

from common import error_words, redis_client
from schedules import drop_folders
from schedules.models import ProcessedFolder, ScheduledImport
from schedules.processed_files import PROCESSED

logger = logging.getLogger("importbeat.retention")

# Files deleted per job at most, so that the first job over years of deliveries stays well
# inside its time limit; the rest go at the next job, an hour later.
DELETE_LIMIT = 10_000
# Files not deleted named in the log per folder and job (the same ones fail every hour).
NAMES_LOGGED = 5


@dataclass
class Tally:
    processed_files: int = 0
    processed_files_not_deleted: int = 0
    # `processed` entries left alone: a link, or a file where a folder should be.
    processed_folders_skipped: int = 0


def delete_old_processed_files(limit: int = DELETE_LIMIT) -> dict[str, int]:
    """Delete the processed files older than PROCESSED_FILE_RETENTION_DAYS (0: none), at most
    `limit` of them; how many went, how many could not, and the folders left alone."""
    tally = Tally()
    days = settings.PROCESSED_FILE_RETENTION_DAYS
    if days > 0:
        began = timezone.now()
        older_than = time.time() - days * 86400
        walked, gone = [], []
        left_unlooked = False
        for folder in processed_folders():
            if tally.processed_files >= limit:
                left_unlooked = True
                break
            outcome = _delete_old_files(folder, older_than, limit, tally)
            if outcome in (WALKED, STOPPED):
                walked.append(folder)
            elif outcome == GONE:
                gone.append(folder)
            left_unlooked = outcome == STOPPED
        if left_unlooked:
            # Said wherever it stopped: stopped in the last folder (or the only one), the job
            # left the rest without a word, its figures those of a job that cleaned everything;
            # and only then: a job that deleted its most and looked at everything said "the
            # rest" of nothing (review).
            logger.info("retention: %s processed files deleted, a job's most: the rest at the "
                        "next run", tally.processed_files)  # fmt: skip
        _remember(walked, began)
        _forget(gone, began)
    _publish(tally)
    return asdict(tally)


def processed_folders() -> list[str]:
    """The `processed/` folders runs filed files into, and those of the imports that file their
    files away now, beside their folder with its links resolved (a source refused now:
    IMPORT_DROP_DIRS changed, a link that leads out, has none); each once."""
    folders = set(ProcessedFolder.objects.values_list("path", flat=True))
    urls = (
        ScheduledImport.objects.filter(move_processed=True, source_url__istartswith="file:")
        .values_list("source_url", flat=True)
        .distinct()
    )
    for url in urls:
        try:
            folders.add(os.path.join(drop_folders.locate(url).folder, PROCESSED))
        except drop_folders.Refused:
            continue
    return sorted(folders)


# What became of a folder: its old files looked at, some files not looked at (the job's most
# deleted), not there, or left alone.
WALKED, STOPPED, GONE, LEFT = "walked", "stopped", "gone", "left"


def _delete_old_files(folder: str, older_than: float, limit: int, tally: Tally) -> str:
    try:
        drop_folders.check_inside(os.path.dirname(folder))
    except drop_folders.Refused:
        # The operator took this folder out of IMPORT_DROP_DIRS (or it leads out through a
        # link now): importbeat no longer touches it, by the operator's choice.
        logger.info("retention: %s left alone: it is no longer in a drop folder "
                    "(IMPORT_DROP_DIRS)", folder)  # fmt: skip
        return LEFT
    try:
        drop_folders.check_inside(folder)
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        try:
            # What was opened, not only its name: a folder above it swapped for a link since.
            drop_folders.check_opened(fd, folder)
        except drop_folders.Refused:
            os.close(fd)
            raise
    except FileNotFoundError:
        return GONE  # no run has filed a file away here yet, or the folder was deleted
    except (OSError, drop_folders.Refused) as error:
        tally.processed_folders_skipped += 1
        logger.warning("retention: %s left alone: %s", folder, _folder_refusal(error))
        return LEFT
    failures: list[str] = []
    outcome = WALKED
    try:
        with os.scandir(fd) as entries:
            for entry in entries:
                if tally.processed_files >= limit:
                    outcome = STOPPED
                    break
                try:
                    # Folders are never deleted, links never followed: a link is a delivery
                    # that was one, filed away itself (schedules.processed_files), and goes by
                    # its own age; unlinked by its name in the opened folder, the file it leads
                    # to is never touched. Kept, a feed delivered as links every minute left
                    # half a million of them a year.
                    if not (entry.is_file(follow_symlinks=False) or entry.is_symlink()):
                        continue
                    if entry.stat(follow_symlinks=False).st_mtime >= older_than:
                        continue
                    os.unlink(entry.name, dir_fd=fd)
                except FileNotFoundError:
                    continue  # gone since the listing
                except OSError as error:
                    failures.append(f"{entry.name!r} ({_words(error)})")
                    continue
                tally.processed_files += 1
                logger.info("retention: deleted %r from %s", entry.name, folder)
    except OSError as error:
        failures.append(f"the folder could not be read to the end ({_words(error)})")
    finally:
        os.close(fd)
    if failures:
        tally.processed_files_not_deleted += len(failures)
        more = len(failures) - NAMES_LOGGED
        logger.warning("retention: %s old processed file(s) in %s not deleted: %s%s",
                       len(failures), folder, ", ".join(failures[:NAMES_LOGGED]),
                       f" and {more} more" if more > 0 else "")  # fmt: skip
    return outcome


def _remember(folders: list[str], began: datetime) -> None:
    """List the folders walked: those of today's imports stay cleaned once the import is gone,
    even if no run filed a file there since the list began (files filed before it)."""
    ProcessedFolder.objects.bulk_create(
        [ProcessedFolder(path=folder, seen_at=began) for folder in folders],
        ignore_conflicts=True,
    )


def _forget(folders: list[str], began: datetime) -> None:
    """Forget the listed folders found gone, unless a run filed a file there since the job
    began (it made the folder again after this job looked)."""
    forgotten, _ = ProcessedFolder.objects.filter(path__in=folders, seen_at__lt=began).delete()
    if forgotten:
        logger.info("retention: %s processed folder(s) gone, no longer looked at", forgotten)


def _folder_refusal(error: BaseException) -> str:
    if isinstance(error, drop_folders.Refused):
        return str(error)
    if isinstance(error, OSError) and error.errno == errno.ELOOP:
        return f"{PROCESSED} is a link, which retention does not follow"
    if isinstance(error, NotADirectoryError):
        return f"{PROCESSED} is a file, not a folder"
    return _words(error)


def _words(error: OSError) -> str:
    return (error.strerror or "input/output error").lower()


def _publish(tally: Tally) -> None:
    """The last job's figures for /metrics, read by the web process (which cannot count the
    files itself: it may not see the folders at all)."""
    summary = {**asdict(tally), "at": time.time()}
    try:
        redis_client.client().set(redis_client.PROCESSED_RETENTION_KEY, json.dumps(summary))
    except RedisError as error:
        error_words.unreachable("Redis to keep the figures for /metrics", error, logger)
