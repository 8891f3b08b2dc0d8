"""A queue of deliveries is drained, not taken one per tick.

A drop folder's glob whose files are filed away in processed/ once imported (move_processed)
is a queue: each run takes the oldest delivery waiting (tasks.drop_folder). Taking one per
tick, a feed faster than its schedule (a file every 5 minutes, an hourly import) fell further
behind at every tick while every run succeeded, and three days' backlog after an outage took
three days of ticks to import. So a run that imported its delivery queues the next run at
once while another delivery waits; the chain ends when none does.
"""

from __future__ import annotations

import logging

from django.db import DatabaseError
from django.utils.timesince import timesince

from common import database_clock
from schedules import drop_folders, processed_files, services
from schedules.drop_folders import is_file_url
from schedules.models import ImportRun, ScheduledImport

from .drop_folder import next_delivery
from .errors import PermanentImportError, log_text

logger = logging.getLogger("importbeat.drop_folder")


def queue_next(ended: ImportRun) -> ImportRun | None:
    """After the run `ended` (loaded with its import), queue a run of its import for the next
    delivery if it was a queue's run that imported its file and another waits.

    Only an active import's queue drains (a paused one waits for its owner), and never past a
    failed run (its file is taken again by the next tick: a queue's head blocks it, and the
    failed run says so). A run already queued or running takes the next delivery itself.

    Never fails: the run is over, and its task must say what the run did. A database that is
    away now leaves the next delivery to the next tick, as before. Any other import's run asks
    nothing (a small run's statements are counted: issue 15).
    """
    imp = ended.scheduled_import
    if not (imp.move_processed and is_file_url(imp.source_url)):
        return None
    try:
        return _queue_next(ended)
    except DatabaseError as error:
        logger.warning(
            "run=%s: the next delivery waits for the next tick: %s", ended.pk,
            log_text(error),
        )  # fmt: skip
        return None


def _queue_next(ended: ImportRun) -> ImportRun | None:
    if ended.status not in processed_files.PROCESSED_STATUSES:
        return None
    # As it is now: paused while the run ran, it waits for its owner.
    imp = (
        ScheduledImport.objects.filter(
            pk=ended.scheduled_import_id, move_processed=True, status=ScheduledImport.Status.ACTIVE
        )
        .select_related("owner")
        .first()
    )
    if imp is None:
        return None
    try:
        waiting = next_delivery(
            imp.source_url,
            lambda etags: processed_files.imported_before(imp.pk, etags),
            drop_folders.folders_of(imp.owner),
        )
    except PermanentImportError as refused:
        # The next tick's run fails on that file with these words, in the run for its owner.
        logger.warning("run=%s: the next delivery waits for the next tick: %s", ended.pk, refused)
        return None
    if waiting is None or waiting == ended.source_file:
        # Its own file again (written anew since it was read, so not filed away): the next
        # tick takes that, or a file rewritten every second would be imported in a loop.
        return None
    try:
        run = services.queue_next_delivery(imp, after=ended.pk, path=waiting)
    except (services.RunAlreadyActive, ScheduledImport.DoesNotExist, services.ImportNotActive):
        return None
    except services.BrokerUnavailable:
        logger.warning(
            "run=%s: the next delivery (%r) waits for the next tick: the broker is unavailable",
            ended.pk, waiting,
        )  # fmt: skip
        return None
    # The file's name as repr, as everywhere else in the log: whoever drops a file chooses its
    # name, and a line break in it forged a log line of its own (xss hunt).
    logger.info("run=%s: run %s queued for the next delivery, %r", ended.pk, run.pk, waiting)
    return run


def nothing_delivered(imp: ScheduledImport, nothing: str) -> str:
    """The words of a run a glob skipped (`nothing`: "no file matches … yet"), with when the
    import last succeeded: a feed that stopped delivering fails nothing, and each of its
    skipped runs says for how long nothing came."""
    if imp.last_success_at is None:
        return f"{nothing}; no run of this import has succeeded yet"
    ago = timesince(imp.last_success_at, database_clock.now(), depth=1).replace("\xa0", " ")
    return (
        f"{nothing}; the import last succeeded {ago} ago ({imp.last_success_at:%Y-%m-%d %H:%M} UTC)"
    )
