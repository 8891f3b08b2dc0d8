"""A worker's pool processes fold a hand-back's lines together: the worker's own line
("run N goes back to the queue: …", tasks.runner) and Celery's ("Task … reject requeue=True:
…", project.worker_log) are said once a minute by the worker, not once a minute by each of its
pool processes.

Regression (words5 hunt): each pool process folded alone, and a worker of concurrency 2 said
each line twice a minute. Processes forked from the one that made the fold, as Celery's prefork
pool forks its pool processes from the worker's main process.
"""

from __future__ import annotations

import logging
import multiprocessing

import pytest
from celery.app.trace import LOG_REJECTED
from celery.exceptions import Reject

from common import said_once
from common.said_once import SaidOnce
from project.worker_log import TRACE_LOGGER, RejectsFolded

FORK = multiprocessing.get_context("fork")


def in_pool_processes(call, times: int) -> list:
    """What `call()` returned in each of `times` processes forked one after the other."""
    answers = []
    for _ in range(times):
        theirs, ours = FORK.Pipe(duplex=False)
        process = FORK.Process(target=_answer, args=(call, ours))
        process.start()
        answers.append(theirs.recv())
        process.join(10)
    return answers


def _answer(call, pipe) -> None:
    pipe.send(call())


def test_what_one_pool_process_said_the_others_do_not_say_again():
    # Given a fold made in the worker's main process
    fold = SaidOnce()

    # When three of its pool processes meet the same words within the minute, and other words
    answers = in_pool_processes(lambda: fold.again("Redis refuses the login"), 3)
    other = in_pool_processes(lambda: fold.again("the database is away"), 1)

    # Then the first says them, the others count them, and other words are said at once
    assert answers == ["", None, None]
    assert other == [""]


def test_the_count_of_the_minute_is_of_all_of_them(monkeypatch):
    fold = SaidOnce()
    now = [1000.0]
    monkeypatch.setattr(said_once.time, "monotonic", lambda: now[0])
    in_pool_processes(lambda: fold.again("away"), 4)

    # When the minute is over, in yet another pool process
    now[0] += 61
    answers = in_pool_processes(lambda: fold.again("away"), 1)

    # Then it says the words again with how often all of them met them
    assert answers == [" (met 3 times more in the last 61 s)"]


def reject_line(task_id: str) -> logging.LogRecord:
    """Celery's line of a run handed back, as its tracer logs it."""
    record = logging.LogRecord(
        TRACE_LOGGER, logging.WARNING, __file__, 0, LOG_REJECTED.strip(), None, None
    )
    record.args = {
        "hostname": "worker@host",
        "id": task_id,
        "name": "importbeat.execute_run",
        "exc": Reject("the database is unreachable; the message goes back to the queue"),
    }
    return record


@pytest.mark.parametrize("processes", [2])
def test_celerys_reject_line_is_said_once_by_the_worker(processes):
    # Given the filter the worker's logging set-up installs, before its pool is forked
    folded = RejectsFolded()

    # When each pool process hands a run back for the same reason
    shown = in_pool_processes(lambda: folded.filter(reject_line("run-7")), processes)

    # Then one of them says Celery's line; the other keeps it out
    assert shown == [True, False]
