"""A sweep pass whose result backend accepts connections and never answers (a blackholed link,
a stuck proxy) waits on it once, about a second, for all the lost tasks' ends it would store,
and says in one line which runs' ends it did not store and why, in words.

Regression: each lost task's end (tasks.lost_tasks.end_lost_task) went through Celery's client of
the result backend, which waited CELERY_REDIS_SOCKET_TIMEOUT (10 s, its retries on top) a task:
a dozen lost runs, and the sweep's soft time limit (120 s) ended the pass there, its parked
lines, notifications and credentials never reached; each end not stored was a line of the
library's words ("Timeout reading from socket") (sweep5 hunt).

In process: the sweep as a worker's sweep task runs it; the result backend a listener of this
test's own that takes connections and never answers; Flower's events recorded.
"""

from collections.abc import Iterator

import pytest
from celery import current_app

from schedules.models import ImportRun
from tests import result_backend_support as backends
from tests.test_a_cancelled_run_the_sweep_ended_ends_once_in_flower import events
from tests.test_a_lost_attempts_task_result_is_its_end_not_its_progress import lost_with_progress

pytestmark = pytest.mark.django_db


@pytest.fixture
def silent_server() -> Iterator[backends.SilentRedis]:
    yield from backends.serving(backends.SilentRedis())


def test_a_sweep_on_a_silent_result_backend_waits_once_and_says_the_ends_it_did_not_store(
    alice, bob, monkeypatch, silent_server, caplog
):
    # Given two dead workers' attempts (alice's, bob's) whose tasks showed progress (stored
    # before the backend fell silent)
    lost_with_progress(alice, retries=0)
    lost_with_progress(bob, retries=3)
    runs = sorted(ImportRun.objects.values_list("pk", flat=True))
    # ... and a result backend that now accepts connections and never answers
    silent = backends.use_result_backend(monkeypatch, silent_server.url)
    assert current_app.backend is silent
    sent = events(monkeypatch)

    # When the sweep passes
    swept = backends.sweep(caplog)

    # Then both runs are resolved and Flower told both ends
    assert swept["recovered"] == 2
    assert sorted(sent) == ["task-failed", "task-failed"]
    # ... the backend was waited on once, not once per lost task
    assert len(silent_server.held) == 1
    # ... and one line says, in words, which runs' ends it did not store and why
    assert backends.said_of_the_result_backend(caplog) == [
        f"the result backend was not told the end of 2 lost tasks (runs {runs[0]}, {runs[1]}: "
        "it did not answer within 1 s); their tasks show their last state there until a later "
        "sweep stores it, and the run log has each end"
    ]
