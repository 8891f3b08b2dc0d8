"""The worker's log while its broker refuses it: said once a minute, not twenty lines a second.

A Redis that is full (at its maxmemory, evicting nothing) takes the consumer's connection and
refuses its first write: Celery's consumer logs "Cannot connect" and restarts at once, five
times, then logs "Frequent restarts detected" with a traceback and sleeps a second; again and
again while Redis stays full. The worker's log grew by about twenty lines a second, which
buried the one that said why. Each such line of the consumer now shows once a minute at most,
with how many times it was said meanwhile, without the restart's traceback (it says nothing
the line does not), and with what a full or read-only Redis means in words. A message handed
back to the queue is logged without the traceback of its hand-back, which said nothing its line
does not, and Celery's line of it is said once a minute for its task and reason, as the
worker's own line before it (tasks.runner.hand_back).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping

import psycopg
from billiard.exceptions import RestartFreqExceeded
from celery.app.trace import LOG_REJECTED
from celery.exceptions import Reject
from celery.signals import after_setup_logger

from common import error_words
from common.said_once import SaidOnce

CONSUMER_LOGGER = "celery.worker.consumer.consumer"
# Where Celery logs a task's end: "Task … reject requeue=True: <reason>".
TRACE_LOGGER = "celery.app.trace"
# A line said again within this is folded into the next one shown.
FOLD_SECONDS = 60.0
_NUMBERS = re.compile(r"\d+")
_MOST_MESSAGES = 1000


class RepeatsFolded(logging.Filter):
    """Shows a warning or worse once per `seconds` for each message (its numbers aside: retry
    counts, delays), the next one shown saying how many were folded."""

    def __init__(self, seconds: float = FOLD_SECONDS) -> None:
        super().__init__()
        self.seconds = seconds
        self._shown: dict[str, tuple[float, int]] = {}  # message: (shown at, folded since)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key = _NUMBERS.sub("#", record.getMessage())
        now = time.monotonic()
        shown_at, folded = self._shown.get(key, (None, 0))
        if shown_at is not None and now - shown_at < self.seconds:
            self._shown[key] = (shown_at, folded + 1)
            return False
        if len(self._shown) >= _MOST_MESSAGES:
            self._shown.clear()  # messages that vary in words, not numbers: forget, not grow
        self._shown[key] = (now, 0)
        _in_words(record)
        if folded:
            record.msg = (
                f"{record.msg} (said {folded} times more in the last {now - shown_at:.0f} s)"
            )
        return True


def _in_words(record: logging.LogRecord) -> None:
    """A refusal said in words; a restart's traceback dropped."""
    args = record.args if isinstance(record.args, tuple) else ()
    errors = [arg for arg in args if isinstance(arg, BaseException)]
    if record.exc_info and record.exc_info[1] is not None:
        errors.append(record.exc_info[1])
        if isinstance(record.exc_info[1], RestartFreqExceeded):
            record.exc_info = None
            record.exc_text = None
    for error in errors:
        if words := error_words.refusal(error):
            # On the error's line: Celery's "Trying to reconnect..." follows on the next.
            head, newline, rest = str(record.msg).partition("\n")
            record.msg = f"{head} ({words}){newline}{rest}"
            return


@after_setup_logger.connect(weak=False, dispatch_uid="importbeat.worker_log")
def fold_the_consumers_repeats(**_: object) -> None:
    consumer = logging.getLogger(CONSUMER_LOGGER)
    if not any(isinstance(f, RepeatsFolded) for f in consumer.filters):
        consumer.addFilter(RepeatsFolded())


class RejectsWithoutTraceback(logging.Filter):
    """A message importbeat hands back to the queue (its database away or with no free
    connection, Redis away, a lock waited for past the time limit) is logged by Celery with the
    traceback of its raise: some sixty lines at each hand-back, every 2 s of each pool process
    for as long as the database stays full (clients hunt), which buried the reason. The reason
    is on Celery's line, and the worker's own line before it names the error. A deadlock or
    another fault of a statement keeps it: handed back as well, it is a bug's to find."""

    def filter(self, record: logging.LogRecord) -> bool:
        if (
            record.exc_info
            and isinstance(record.exc_info[1], Reject)
            and not _a_statements_fault(record.exc_info[1])
        ):
            record.exc_info = None
            record.exc_text = None
        return True


# PostgreSQL's codes of a statement's fault, not of a server away, full, refusing the login or
# read-only: a transaction rolled back (40: a deadlock, a serialization failure) or an internal
# error (XX).
_STATEMENTS_FAULTS = ("40", "XX")


def _a_statements_fault(reject: Reject) -> bool:
    """Whether the hand-back's cause is an error PostgreSQL gave a statement (a deadlock, a
    serialization failure): a bug's, whose traceback says which statement, where the line only
    says "unreachable" (review1: the deadlock of a claim lost its traceback)."""
    return any(
        isinstance(link, psycopg.Error) and (link.sqlstate or "").startswith(_STATEMENTS_FAULTS)
        for link in error_words.chain(reject)
    )


class RejectsFolded(logging.Filter):
    """Celery's line of a hand-back ("Task importbeat.execute_run[id] reject requeue=True:
    <reason>") said at once, then at most once a minute for its task and reason, with how often
    it was met meanwhile; the repeats go at DEBUG (dropped by a worker at INFO). Celery logged
    it at each delivery, every 2 s of each run handed back, beside the worker's own line that
    says it once a minute (fold5 hunt). A reject of another reason or of another task is said
    at once; one that keeps its traceback (a statement's fault) is never folded."""

    def __init__(self) -> None:
        super().__init__()
        self._said = SaidOnce()

    def filter(self, record: logging.LogRecord) -> bool:
        context = record.args
        if (
            record.levelno < logging.WARNING
            or record.msg != _CELERYS_REJECT
            or not isinstance(context, Mapping)
            or _keeps_its_traceback(record)
        ):
            return True
        # The task's id aside: each run's redeliveries, and each run's, are the same line.
        again = self._said.again(f"{context.get('name')} {context.get('exc')}")
        if again is None:
            if not logging.getLogger(record.name).isEnabledFor(logging.DEBUG):
                return False
            record.levelno, record.levelname = logging.DEBUG, logging.getLevelName(logging.DEBUG)
            return True
        if again:
            record.msg = f"{record.msg}{again.replace('%', '%%')}"
        return True


# The format of Celery's line of a rejected task (celery.app.trace._log_error).
_CELERYS_REJECT = LOG_REJECTED.strip()


def _keeps_its_traceback(record: logging.LogRecord) -> bool:
    error = record.exc_info[1] if record.exc_info else None
    return isinstance(error, Reject) and _a_statements_fault(error)


@after_setup_logger.connect(weak=False, dispatch_uid="importbeat.worker_log.rejects")
def say_rejects_without_traceback(**_: object) -> None:
    trace = logging.getLogger(TRACE_LOGGER)
    if not any(isinstance(f, RejectsWithoutTraceback) for f in trace.filters):
        trace.addFilter(RejectsWithoutTraceback())
    if not any(isinstance(f, RejectsFolded) for f in trace.filters):
        trace.addFilter(RejectsFolded())
