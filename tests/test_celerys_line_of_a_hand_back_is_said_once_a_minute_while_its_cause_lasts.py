"""Celery's own line of a message handed back to the queue ("Task importbeat.execute_run[id]
reject requeue=True: <reason>") is said at once, then once a minute for its task and reason
with how often it was met meanwhile, as the worker's own line before it is.

Celery logs it at each delivery: a run handed back comes again every 2 s, so a worker whose
Redis of run locks refused its login said it every ~2 s per run for as long as the password
stayed wrong, beside importbeat's line folded to once a minute (words4 hunt, fold5 hunt). A
hand-back of another reason, or of another task, is said at once; one that keeps its traceback
(a deadlock: a bug's to find) is never folded. Celery's tracer in process, the filters the
worker's logging set-up installs (project.worker_log).
"""

from __future__ import annotations

import logging

import psycopg.errors
import pytest
from celery import Celery
from celery.exceptions import Reject

from common import said_once
from project.worker_log import TRACE_LOGGER, say_rejects_without_traceback
from tasks import runner

app = Celery("worker", set_as_current=False)


@app.task(name="importbeat.execute_run")
def execute_run(reason: str, deadlock: bool = False) -> None:
    if deadlock:
        try:
            raise psycopg.errors.DeadlockDetected("deadlock detected")
        except psycopg.Error as error:
            raise Reject(reason, requeue=True) from error
    raise Reject(reason, requeue=True)


@app.task(name="importbeat.dispatch_scheduled_import")
def dispatch_scheduled_import(reason: str) -> None:
    raise Reject(reason, requeue=True)


@pytest.fixture
def worker_log(monkeypatch):
    """The trace logger's filters as a worker's logging set-up leaves them; a clock to move."""
    trace = logging.getLogger(TRACE_LOGGER)
    before = list(trace.filters)
    trace.filters.clear()
    say_rejects_without_traceback()
    now = [1000.0]
    monkeypatch.setattr(said_once.time, "monotonic", lambda: now[0])
    try:
        yield now
    finally:
        trace.filters[:] = before


def said(caplog, level: int = logging.WARNING) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == TRACE_LOGGER and r.levelno == level]


def rejected(task: str, task_id: str, reason: str) -> str:
    return f"Task {task}[{task_id}] reject requeue=True: {reason}"


REFUSED = runner.REDIS_REFUSES_THE_LOGIN
AWAY = runner.DATABASE_UNREACHABLE
RUN = "importbeat.execute_run"


def test_celerys_line_is_said_once_then_once_a_minute_with_a_count(worker_log, caplog):
    now = worker_log
    with caplog.at_level(logging.INFO):
        # Given a worker at INFO whose Redis of run locks refuses its login
        # When it hands two runs back again and again for half a minute
        for _delivery in range(8):
            execute_run.apply((REFUSED,), task_id="run-7")
            execute_run.apply((REFUSED,), task_id="run-8")
            now[0] += 4
        # Then Celery's line is said once, at once, and its repeats not at all
        assert said(caplog) == [rejected(RUN, "run-7", REFUSED)]
        assert said(caplog, logging.DEBUG) == []

        # And a hand-back of another reason, and another task's, are each said at once
        execute_run.apply((AWAY,), task_id="run-9")
        dispatch_scheduled_import.apply((AWAY,), task_id="tick-1")
        assert said(caplog)[1:] == [
            rejected(RUN, "run-9", AWAY),
            rejected("importbeat.dispatch_scheduled_import", "tick-1", AWAY),
        ]

        # And once a minute is over, once more, with how often it was met meanwhile
        now[0] = 1000.0 + 61
        execute_run.apply((REFUSED,), task_id="run-8")
    assert said(caplog)[3:] == [
        f"{rejected(RUN, 'run-8', REFUSED)} (met 15 times more in the last 61 s)"
    ]


def test_its_repeats_go_at_debug_for_a_worker_at_debug(worker_log, caplog):
    # Given a worker at DEBUG
    with caplog.at_level(logging.DEBUG):
        # When it hands a run back twice for the same reason
        execute_run.apply((REFUSED,), task_id="run-7")
        execute_run.apply((REFUSED,), task_id="run-7")
    # Then the repeat is there, at DEBUG
    assert said(caplog) == [rejected(RUN, "run-7", REFUSED)]
    assert said(caplog, logging.DEBUG) == [rejected(RUN, "run-7", REFUSED)]


def test_a_hand_back_that_keeps_its_traceback_is_never_folded(worker_log, caplog):
    with caplog.at_level(logging.INFO):
        # Given a worker that handed a run back for a database away
        execute_run.apply((AWAY,), task_id="run-7")
        # When two claims deadlock within the minute, handed back for the same reason
        execute_run.apply((AWAY, True), task_id="run-8")
        execute_run.apply((AWAY, True), task_id="run-9")
    # Then each is said, with the traceback that says where
    shown = [r for r in caplog.records if r.name == TRACE_LOGGER]
    assert [r.getMessage() for r in shown] == [
        rejected(RUN, "run-7", AWAY),
        rejected(RUN, "run-8", AWAY),
        rejected(RUN, "run-9", AWAY),
    ]
    assert [r.exc_info is not None for r in shown] == [False, True, True]
