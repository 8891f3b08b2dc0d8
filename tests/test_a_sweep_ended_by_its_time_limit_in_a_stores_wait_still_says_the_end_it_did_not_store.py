"""A sweep pass that its soft time limit ends while it waits on a silent result backend still
says, in its one line, the lost task's end it did not store.

Regression: the limit, raised in the store's wait (tasks.lost_tasks.EndStore.end), went up
through the pass past the line that says the ends not stored (EndStore.say), and that end was
said by nobody: its task showed PROGRESS in the result backend for a day with no word of why
(reviewA hunt).

In process: the sweep as a worker's sweep task runs it; the result backend a listener of this
test's own that takes connections and never answers; the soft time limit raised as Celery's
pool raises it in the task's process (a signal handler), a moment into the wait.
"""

import signal
from collections.abc import Iterator

import pytest
from celery.exceptions import SoftTimeLimitExceeded

from schedules.models import ImportRun
from tests import result_backend_support as backends
from tests.test_a_cancelled_run_the_sweep_ended_ends_once_in_flower import events
from tests.test_a_lost_attempts_task_result_is_its_end_not_its_progress import lost_with_progress

pytestmark = pytest.mark.django_db


@pytest.fixture
def silent_server() -> Iterator[backends.SilentRedis]:
    yield from backends.serving(backends.SilentRedis())


@pytest.fixture
def soft_limit_in():
    """Raises SoftTimeLimitExceeded in this thread after `seconds`, as the pool's signal does."""

    def raise_limit(*_):
        raise SoftTimeLimitExceeded()

    previous = signal.signal(signal.SIGALRM, raise_limit)

    def arm(seconds: float) -> None:
        signal.setitimer(signal.ITIMER_REAL, seconds)

    yield arm
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, previous)


def test_the_time_limit_struck_in_a_stores_wait_does_not_swallow_the_passes_line(
    alice,
    monkeypatch,
    silent_server,
    soft_limit_in,
    caplog,
):
    # Given a dead worker's attempt whose task showed progress, and a silent result backend
    lost_with_progress(alice, retries=0)
    run = ImportRun.objects.get()
    backends.use_result_backend(monkeypatch, silent_server.url)
    events(monkeypatch)

    # When the sweep's soft time limit strikes while it waits on that backend
    soft_limit_in(0.3)
    with pytest.raises(SoftTimeLimitExceeded):
        backends.sweep(caplog)

    # Then the pass still says, in words, the run whose end it did not store, and why
    assert backends.said_of_the_result_backend(caplog) == [
        f"the result backend was not told the end of 1 lost tasks (runs {run.pk}: the sweep's "
        "time limit struck while it waited); their tasks show their last state there until a "
        "later sweep stores it, and the run log has each end"
    ]
