"""A lost attempt's end that the sweep told Flower but could not store in the result backend
(the backend silent at that pass) is stored by the next sweep once the backend answers, once.

Regression (results3 hunt): no later pass stored it. The next sweep tells an end the broker
refused (tell_untold_ends), but an end whose event left was noted told, and the task kept its
attempt's PROGRESS in the result backend for a day (CELERY_RESULT_EXPIRES): AsyncResult and
Flower's result page said the import still went on, where Flower's events and the run log said
it failed.

In process: the sweep as a worker's sweep task runs it; the result backend a real Redis of the
test's own, stopped (SIGSTOP) during the first pass and answering at the next; Flower's events
recorded.
"""

import os
import signal

import pytest
import redis
from celery import current_app

from schedules import services
from schedules.models import ImportRun
from tasks import maintenance
from tests.result_backend_support import result_backend_of_its_own
from tests.test_a_cancelled_run_the_sweep_ended_ends_once_in_flower import events
from tests.test_a_lost_attempts_task_result_is_its_end_not_its_progress import (
    SWEEPER,
    lost_with_progress,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def results_redis(tmp_path, monkeypatch):
    """The result backend on a Redis of its own, and a client of that Redis to count with."""
    with result_backend_of_its_own(tmp_path, monkeypatch) as (server, _, admin):
        try:
            yield server, admin
        finally:
            os.kill(server.process.pid, signal.SIGCONT)


def writes(admin: redis.Redis) -> int:
    """How many states the Redis was given (Celery writes one with SETEX, or SET)."""
    stats = admin.info("commandstats")
    return sum(stats.get(f"cmdstat_{name}", {}).get("calls", 0) for name in ("set", "setex"))


def test_an_end_told_and_not_stored_is_stored_by_the_next_sweep_once(
    alice, monkeypatch, results_redis
):
    server, admin = results_redis
    # Given a dead worker's attempt whose task stored PROGRESS
    task = lost_with_progress(alice, retries=0)
    sent = events(monkeypatch)

    # When the sweep ends it while the result backend is stopped
    os.kill(server.process.pid, signal.SIGSTOP)
    assert maintenance.sweep_runs(reporter=SWEEPER)["recovered"] == 1
    os.kill(server.process.pid, signal.SIGCONT)

    # Then Flower is told its end, the result backend still says PROGRESS
    assert sent == ["task-failed"]
    assert current_app.backend.get_task_meta(task)["status"] == "PROGRESS"

    # When the next sweep passes, the backend answering
    maintenance.sweep_runs(reporter=SWEEPER)

    # Then the task's stored state is its end, in the run's words, and Flower was not told again
    stored = current_app.backend.get_task_meta(task)
    assert stored["status"] == "FAILURE", stored
    assert "failed: the worker running attempt 1 was lost" in str(stored["result"])
    assert sent == ["task-failed"]
    run = ImportRun.objects.get(celery_task_id=task)
    assert run.error_details[services.LOST_TASK_END]["stored"] is True

    # ... and a sweep after it stores it no more
    before = writes(admin)
    maintenance.sweep_runs(reporter=SWEEPER)
    assert writes(admin) == before
    assert sent == ["task-failed"]
