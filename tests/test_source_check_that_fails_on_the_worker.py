"""A check that stops on an unexpected error on the worker answers in plain words; the error's
class goes to the log, not to the person checking a source (it read "the check failed on the
worker (ValueError); see its log")."""

import logging

import pytest

from schedules import source_check
from tests.conftest import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]


def test_a_check_that_crashes_on_the_worker_says_so_in_plain_words(processes, caplog):
    # Given a worker
    processes.start("worker")
    from project.celery import app

    wait_for(lambda: app.control.ping(timeout=0.5), 30, what="the worker\n" + processes.logs())
    caplog.set_level(logging.WARNING, logger="schedules.source_check")

    # When a check's task fails there (an id that is no id: the task raises ValueError)
    answer = source_check._ask("importbeat.check_source", ["not-an-id"], wait=20)

    # Then the answer is plain words, and the class is in the log
    assert answer.ok is False
    assert answer.problems == [source_check.WORKER_FAILED]
    assert answer.summary() == (
        "Test source: the check stopped on an unexpected error on the worker; the details are "
        "logged"
    )
    assert "ValueError" in caplog.text
