"""How an import can fail: transient failures are retried, permanent ones end the run at once."""

import logging
import re
import tempfile

import psycopg

# A database error's own text on one line, for the worker's log only (psycopg's names the
# database's host and port, and adds hints on further lines).
from common.error_words import chain, log_text

logger = logging.getLogger("importbeat.runs")

# What a run's log says when its connection to importbeat's database broke; the runner adds
# what happens next (a retry, or why there is none).
DATABASE_LOST = "the run lost its connection to importbeat's database"
# ... and when the database's disk filled up under the run's rows (a big file's staging tables
# are where it shows first): not a lost connection, and the operators' to mend.
DATABASE_FULL = (
    "importbeat's database ran out of disk space while the run wrote the file's rows: the "
    "operators must free space on the database server"
)

# ... and when the database ended one of the run's statements: an operator's
# pg_cancel_backend, or a statement timeout (a worker's sessions allow the longest run's time,
# project/worker_connections.py, so only one set lower since).
STATEMENT_CANCELLED = (
    "importbeat's database cancelled a statement of the run (an operator's pg_cancel_backend, "
    "or a statement timeout)"
)


class ImportFailed(Exception):
    """Base class; the message is what the run log shows."""

    # True when the message could not say in plain words what a library's error was
    # (tasks.fetch_errors): the run then keeps the traceback for staff (tasks.runner).
    unexplained = False


class TransientImportError(ImportFailed):
    """Worth another attempt: connection errors, timeouts, HTTP 5xx/429, database hiccups."""


class PermanentImportError(ImportFailed):
    """Retrying would fail the same way: HTTP 4xx, not a CSV, missing key column, bad options."""


class NothingToImport(ImportFailed):
    """A glob source matches no file: nothing delivered yet, or every delivery already moved to
    processed/. The run is skipped, not failed, and the next tick looks again."""


class RunCancelled(ImportFailed):
    """Someone cancelled the running attempt (services.cancel_run); raised at a safe point,
    before the merge commits, so the dataset is left as it was. The message is the run's."""


class RunDeleted(RunCancelled):
    """The running attempt's run was deleted, with its import (services.delete_import) or alone
    (the admin): it stops at its next safe point as a cancelled one does, and there is no run
    left to end."""


class RunFailed(Exception):
    """Raised by a run's Celery task when the run ended failed or timed out, so that the task
    ends FAILURE (Flower) with the run's error; the run log already holds the outcome."""


class NotificationFailed(Exception):
    """Raised by a notification's Celery task when the notification failed for good, so that
    the task ends FAILURE (Flower) with the error its delivery log already holds. Before, such a
    task ended SUCCESS: Flower showed a callback that refused every try as delivered."""


class DatabaseLost(TransientImportError):
    """The run's connection to importbeat's own database broke (a restart, a failover, a
    network cut), or its disk filled up: retried like any transient failure.

    Its message is plain words: psycopg's names the operator's database host and port, which
    the owner of an import has no use for and should not see. The original goes to the
    worker's log and, for staff, to the run's `error_details.traceback` (tasks.runner)."""

    unexplained = True

    def __init__(self, message: str = DATABASE_LOST) -> None:
        super().__init__(message)


def worker_disk_full(error: OSError) -> TransientImportError:
    """The worker's temporary directory filled up under the file it keeps of the run (the spool
    a big file's rows are read back from): the operators' to mend, and retried, since the runs
    beside it may have given their space back by then."""
    logger.warning("worker disk full: %s", log_text(error))
    return TransientImportError(
        f"the worker ran out of disk space for the file in its temporary directory "
        f"({tempfile.gettempdir()}): the operators must free space there, or give the workers "
        "more (TMPDIR)"
    )


BEYOND_LIMITS = (
    "a value of the file is beyond what importbeat's database can hold (a field or a row too "
    "large for it); trying again would fail the same way"
)


ROW_TOO_BIG = re.compile(r"row is too big: size (\d+), maximum size (\d+)")
WIDE_ROW = (
    "a row of the file is too large for importbeat's staging ({size:,} bytes, where "
    "PostgreSQL holds {limit:,} a row once its values are stored): a file this wide takes "
    "shorter values, or fewer columns; trying again would fail the same way"
)


def beyond_database_limits(error: BaseException) -> PermanentImportError | None:
    """A statement of the run that PostgreSQL refused as past its limits (SQLSTATE class 54:
    an index entry or a row too large) fails the run at once: psycopg calls it an
    OperationalError, and it was taken for a lost connection and retried at every attempt."""
    # By SQLSTATE: psycopg's classes of class 54 (TooManyColumns, ...) are siblings of
    # ProgramLimitExceeded, not its kind, and were taken for a lost connection.
    refused = [
        link
        for link in chain(error)
        if isinstance(link, psycopg.Error) and (link.sqlstate or "").startswith("54")
    ]
    if not refused:
        return None
    logger.warning("database limit exceeded: %s", log_text(error))
    too_big = ROW_TOO_BIG.search(refused[0].diag.message_primary or "")
    if too_big:
        # A wide file's row in staging (a text column a field): the limit is the whole row's,
        # not a field's, and the words "a value ... a field or a row" sent users looking for
        # a long field the file does not hold.
        size, limit = (int(n) for n in too_big.groups())
        return PermanentImportError(WIDE_ROW.format(size=size, limit=limit))
    return PermanentImportError(BEYOND_LIMITS)


def database_error(error: BaseException) -> DatabaseLost:
    """`error` (Django's or psycopg's) as the run's failure; its own text is logged here."""
    links = chain(error)
    if any(isinstance(link, psycopg.errors.DiskFull) for link in links):
        logger.warning("database disk full: %s", log_text(error))
        lost = DatabaseLost(DATABASE_FULL)
    elif any(isinstance(link, psycopg.errors.QueryCanceled) for link in links):
        logger.warning("database statement cancelled: %s", log_text(error))
        lost = DatabaseLost(STATEMENT_CANCELLED)
    else:
        logger.warning("database connection lost: %s", log_text(error))
        lost = DatabaseLost()
    lost.__cause__ = error
    return lost
