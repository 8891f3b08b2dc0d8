"""The worker's consumer says a repeated warning once a minute, with how often it was said
(project/worker_log.py): a full Redis made it log about twenty lines a second."""

from __future__ import annotations

import logging

import pytest
import redis
from billiard.exceptions import RestartFreqExceeded

from common import error_words
from project import worker_log


@pytest.fixture
def consumer_log(monkeypatch):
    """The consumer's logger with the filter, on a clock the test moves; what it shows."""
    now = [1000.0]
    monkeypatch.setattr(worker_log.time, "monotonic", lambda: now[0])
    logger = logging.getLogger("test.worker_log")
    shown: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            shown.append(record)

    handler = Keep()
    logger.addHandler(handler)
    logger.addFilter(worker_log.RepeatsFolded())
    logger.propagate = False
    yield logger, shown, now
    logger.removeHandler(handler)
    logger.filters.clear()


FULL = redis.exceptions.OutOfMemoryError("command not allowed when used memory > 'maxmemory'.")


def test_a_repeated_line_shows_once_a_minute_saying_how_often(consumer_log):
    logger, shown, now = consumer_log
    for attempt in range(1, 121):  # two minutes of a consumer restarting every second
        logger.error("consumer: Cannot connect to %s: %s.\n%s", "redis://b", FULL,
                     f"Trying again in {attempt} seconds... ({attempt}/100)")  # fmt: skip
        now[0] += 1
    lines = [record.getMessage() for record in shown]
    assert len(lines) == 2
    assert lines[0] == (
        "consumer: Cannot connect to redis://b: command not allowed when used memory >"
        f" 'maxmemory'.. ({error_words.FULL})\nTrying again in 1 seconds... (1/100)"
    )
    assert lines[1].endswith("(61/100) (said 59 times more in the last 60 s)")


def test_a_restart_loop_keeps_its_line_but_not_its_traceback(consumer_log):
    logger, shown, _ = consumer_log
    try:
        raise RestartFreqExceeded("5 in 1s")
    except RestartFreqExceeded as error:
        logger.critical("Frequent restarts detected: %r", error, exc_info=1)
    (record,) = shown
    assert record.exc_info is None
    assert record.getMessage() == "Frequent restarts detected: RestartFreqExceeded('5 in 1s')"


def test_other_lines_and_info_pass_untouched(consumer_log):
    logger, shown, _ = consumer_log
    logger.info("Connected to %s", "redis://b")
    logger.info("Connected to %s", "redis://b")
    logger.warning("consumer: Connection to broker lost.")
    logger.warning("mingle: all alone")
    assert [record.getMessage() for record in shown] == [
        "Connected to redis://b", "Connected to redis://b",
        "consumer: Connection to broker lost.", "mingle: all alone",
    ]  # fmt: skip
