"""A lost task's end that the result backend refuses with an answer no words of importbeat's
know (WRONGTYPE: another program's value at the task's key) is said, in the sweep's line of
the ends it did not store, with the backend's own words.

Regression: the line said "(runs N: the reason is in the log)", and the reason was only in a
DEBUG line, which a worker at INFO never writes: the operator had no reason anywhere (reviewA
hunt).

In process: the sweep as a worker's sweep task runs it, the suite's real Redis result backend;
Flower's events recorded.
"""

import logging

import pytest
from celery import current_app

from schedules.models import ImportRun
from tasks import maintenance
from tests.test_a_cancelled_run_the_sweep_ended_ends_once_in_flower import events
from tests.test_a_lost_attempts_task_result_is_its_end_not_its_progress import (
    SWEEPER,
    lost_with_progress,
)

pytestmark = pytest.mark.django_db


def test_the_sweeps_line_gives_the_backends_own_words_where_none_of_importbeats_know_them(
    alice, monkeypatch, caplog
):
    # Given a dead worker's attempt whose task's key in the result backend holds a list
    task = lost_with_progress(alice, retries=0)
    run = ImportRun.objects.get()
    backend = current_app.backend
    key = backend.get_key_for_task(task)
    backend.client.delete(key)
    backend.client.rpush(key, "not a result")
    events(monkeypatch)

    # When the sweep passes
    caplog.set_level(logging.INFO, logger="importbeat.maintenance")
    try:
        maintenance.sweep_runs(reporter=SWEEPER)
    finally:
        backend.client.delete(key)

    # Then its line says the backend's own words, without a class name
    said = [r.getMessage() for r in caplog.records if "result backend" in r.getMessage()]
    assert said == [
        f"the result backend was not told the end of 1 lost tasks (runs {run.pk}: WRONGTYPE "
        "Operation against a key holding the wrong kind of value); their tasks show their last "
        "state there until a later sweep stores it, and the run log has each end"
    ]
