"""A message handed back to the queue for a fault of the database's statements (a deadlock, a
serialization failure) keeps its traceback in the worker's log; one handed back because the
database is away or full does not.

Regression (review1): the filter that drops the traceback of a hand-back (project.worker_log,
RejectsWithoutTraceback: some sixty lines every 2 s of each pool process while the database
was full) dropped every one. A deadlock in a run's claim, a lock-ordering bug, is handed back
as the database "unreachable" (runner.database_or_requeue takes any OperationalError), and its
traceback, the only place that said which statement deadlocked, was gone.
"""

from __future__ import annotations

import logging

import psycopg
import psycopg.errors
import pytest
from celery.exceptions import Reject
from django.db import OperationalError

from project.worker_log import TRACE_LOGGER, say_rejects_without_traceback


def handed_back(cause: psycopg.Error) -> None:
    """Raise the hand-back as the runner does: Django's error from psycopg's, then Reject."""
    try:
        try:
            raise cause
        except psycopg.Error as error:
            raise OperationalError(*error.args) from error
    except OperationalError as error:
        raise Reject("importbeat's database is unreachable", requeue=True) from error


def celery_logs_the_hand_back(cause: psycopg.Error) -> logging.LogRecord:
    say_rejects_without_traceback()
    logger = logging.getLogger(TRACE_LOGGER)
    records: list[logging.LogRecord] = []

    class Kept(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    kept = Kept()
    logger.addHandler(kept)
    try:
        try:
            handed_back(cause)
        except Reject:
            logger.warning("Task run[1] reject requeue=True: unreachable", exc_info=True)
    finally:
        logger.removeHandler(kept)
    return records[-1]


def test_a_deadlock_handed_back_keeps_its_traceback():
    # Given a run's claim that deadlocked with another session's statement
    deadlock = psycopg.errors.DeadlockDetected("deadlock detected")

    # When its message is handed back and Celery logs the hand-back
    record = celery_logs_the_hand_back(deadlock)

    # Then the line keeps the traceback, which says where the deadlock was
    assert record.exc_info is not None


@pytest.mark.parametrize(
    "cause",
    [
        psycopg.OperationalError("connection failed: Connection refused"),
        psycopg.errors.TooManyConnections("sorry, too many clients already"),
        psycopg.errors.AdminShutdown("terminating connection due to administrator command"),
        psycopg.errors.ReadOnlySqlTransaction("cannot execute UPDATE in a read-only transaction"),
        psycopg.errors.InvalidPassword('password authentication failed for user "importbeat"'),
        psycopg.errors.QueryCanceled("canceling statement due to statement timeout"),
    ],
)
def test_a_database_away_or_full_is_handed_back_without_its_traceback(cause):
    # Given a database that is away, full, shutting down or a standby
    # When a message is handed back for it and Celery logs the hand-back
    record = celery_logs_the_hand_back(cause)

    # Then the line goes without the traceback (the reason is on it)
    assert record.exc_info is None
