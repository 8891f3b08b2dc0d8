"""A task that stops on an unexpected error keeps the import's credential out of what Celery
keeps and shows of it.

Celery stores a failed task's exception (its arguments) and traceback in the result backend,
logs them with the exception's repr, and sends them to Flower; none of that passes through the
hiding of a run's texts (services.without_secrets). An unexpected error can quote what the
source answered, and the source may repeat the credential it was sent. One such error was
found and fixed (tasks.fetch: a Content-Length of digits Python reads as such but int()
refuses, `48151623²` from a server echoing the key, stopped Test source with `ValueError:
invalid literal for int() with base 10: '48151623²'`); this is for the next one.

The tasks that handle one import's source or notifications (the source checks, a notification's
delivery) run inside `secrets_hidden(imp)`: an error whose text holds the secret leaves as
TaskCrashed, its traceback and text hidden; any other error leaves as it is, its class and
frames intact for the operators. A run's own task records its errors in the run (tasks.runner).
"""

from __future__ import annotations

import traceback
from collections.abc import Iterator
from contextlib import contextmanager

from celery.exceptions import TaskPredicate

from schedules import services
from schedules.models import ScheduledImport

from .errors import ImportFailed


class TaskCrashed(Exception):
    """An unexpected error whose text held the import's credential: its traceback, hidden."""


@contextmanager
def secrets_hidden(imp: ScheduledImport) -> Iterator[None]:
    """Raise an unexpected error in this block without `imp`'s credential in its text.

    ImportFailed and Celery's own signals (a retry, a rejection) pass as they are: the caller
    handles them, and their words are hidden where they are written.
    """
    try:
        yield
    except (ImportFailed, TaskPredicate):
        raise
    except Exception as error:
        # The traceback holds the error's text and the errors chained to it; the repr, its
        # arguments (Celery stores them, and a UnicodeError's hold the whole value).
        told = ["".join(traceback.format_exception(error)), repr(error)]
        shown = services.without_secrets(imp, told)
        if shown == told:
            raise
        raise TaskCrashed(shown[0].rstrip()) from None
