"""A beat job that a bug kept from being sent is logged with its traceback, not as a broker that
cannot be reached.

Beat says a job the broker refuses in one WARNING line (project.beat.ImportScheduler.apply_entry),
and it took any OSError anywhere in the error's chain for the broker's: a bug raised while
something in the publish handled an OSError of its own (a file not found) was said "cannot reach
the broker: no server listens on that socket", its traceback gone (review of the broker hunt's
change). The broker's error is the one the publish raised itself.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from types import SimpleNamespace

import redis
from celery.beat import SchedulingError
from celery.exceptions import reraise

from project.beat import ImportScheduler

SWEEP = SimpleNamespace(name="importbeat:maintenance:sweep", task="importbeat.sweep")


def a_scheduler_whose_publish_raises(error: Exception) -> SimpleNamespace:
    """What apply_entry uses of a scheduler: Celery's apply_async, which wraps what the publish
    raised in a SchedulingError."""

    def apply_async(entry, producer=None, advance=True, **kwargs):
        try:
            raise error
        except Exception as raised:
            reraise(SchedulingError, SchedulingError(f"Couldn't apply {entry.name}: {raised}"),
                    sys.exc_info()[2])  # fmt: skip

    return SimpleNamespace(apply_async=apply_async)


def a_bug_met_while_handling_a_missing_file() -> TypeError:
    try:
        try:
            Path("/nonexistent/importbeat/publish-hook.json").read_text()
        except OSError:
            raise TypeError("a publish hook's bug")  # noqa: B904 (a bug, as bugs are raised)
    except TypeError as bug:
        return bug


def said_of(caplog) -> logging.LogRecord:
    [record] = [r for r in caplog.records if "not sent" in r.getMessage()]
    return record


def test_a_bug_met_while_handling_an_oserror_is_logged_with_its_traceback(caplog):
    # Given a publish that fails on a bug, raised as an OSError of its own was handled
    scheduler = a_scheduler_whose_publish_raises(a_bug_met_while_handling_a_missing_file())

    # When beat sends the sweep
    with caplog.at_level(logging.INFO, logger="importbeat.beat"):
        ImportScheduler.apply_entry(scheduler, SWEEP)

    # Then the log says the job was not sent, with the bug's traceback, and no word of a broker
    said = said_of(caplog)
    assert said.levelno == logging.ERROR
    assert "broker" not in said.getMessage()
    assert said.exc_info is not None


def test_a_full_broker_is_still_one_line_in_words(caplog):
    # Given a broker that refuses the message: full
    full = redis.exceptions.OutOfMemoryError(
        "OOM command not allowed when used memory > 'maxmemory'."
    )
    scheduler = a_scheduler_whose_publish_raises(full)

    # When beat sends the sweep
    with caplog.at_level(logging.INFO, logger="importbeat.beat"):
        ImportScheduler.apply_entry(scheduler, SWEEP)

    # Then that is one WARNING line, in words, without a traceback
    said = said_of(caplog)
    assert said.levelno == logging.WARNING
    assert "the broker refuses new messages: Redis is full" in said.getMessage()
    assert said.exc_info is None
