"""How an import can fail: transient failures are retried, permanent ones end the run at once."""


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


class RunFailed(Exception):
    """Raised by a run's Celery task when the run ended failed or timed out, so that the task
    ends FAILURE (Flower) with the run's error; the run log already holds the outcome."""


def database_error(error: BaseException) -> str:
    """A lost database connection in the run log: the first line of its message (psycopg adds
    hints on further lines; an unexpected database error is reported by the runner instead)."""
    first_line = (str(error).strip().splitlines() or ["connection lost"])[0]
    return f"database error: {first_line}"
