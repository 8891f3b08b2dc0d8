"""A result backend that fails one store at once (a connection a restarted Redis closed, a
failover's refusal) costs the sweep that one end: the pass stores the other lost tasks' ends,
and says the one it did not store.

Regression: the pass's stores (tasks.lost_tasks.EndStore) stopped at the first failure, however
quick: every later end of the pass was left unstored, its task showing PROGRESS in the result
backend until it expired (a day), and no later pass stores an end it told (reviewA hunt). Only a
failure that waited (a silent backend) stops the rest now.

In process: the sweep as a worker's sweep task runs it; the result backend the suite's Redis
behind a relay of this test's own that closes its first connection as the first command comes;
Flower's events recorded.
"""

import urllib.parse
from collections.abc import Iterator

import pytest
from celery import current_app
from django.conf import settings

from schedules.models import ImportRun
from tests import result_backend_support as backends
from tests.test_a_cancelled_run_the_sweep_ended_ends_once_in_flower import events
from tests.test_a_lost_attempts_task_result_is_its_end_not_its_progress import lost_with_progress

pytestmark = pytest.mark.django_db


@pytest.fixture
def relay() -> Iterator[backends.DropsFirstConnection]:
    redis = urllib.parse.urlsplit(settings.REDIS_URL)
    yield from backends.serving(backends.DropsFirstConnection((redis.hostname, redis.port)))


def test_a_store_that_failed_at_once_does_not_leave_the_passes_other_ends_unstored(
    alice, bob, monkeypatch, relay, caplog
):
    # Given two dead workers' attempts (alice's, bob's) whose tasks showed progress
    tasks = [lost_with_progress(alice, retries=0), lost_with_progress(bob, retries=0)]
    runs = [ImportRun.objects.get(celery_task_id=task).pk for task in tasks]
    real = current_app.backend
    # ... and a result backend whose first connection is closed as it is used (one-off)
    db = urllib.parse.urlsplit(real.url).path.lstrip("/") or "0"
    backends.use_result_backend(monkeypatch, relay.url(db))
    events(monkeypatch)

    # When the sweep passes
    swept = backends.sweep(caplog)

    # Then both runs are resolved, one end was not stored and the other one was
    assert swept["recovered"] == 2
    states = sorted(real.get_task_meta(task)["status"] for task in tasks)
    assert states == ["FAILURE", "PROGRESS"], states
    # ... and one line says, in words, which run's end it did not store
    said = backends.said_of_the_result_backend(caplog)
    unstored = next(
        run
        for run, task in zip(runs, tasks, strict=True)
        if real.get_task_meta(task)["status"] == "PROGRESS"
    )
    assert said == [
        f"the result backend was not told the end of 1 lost tasks (runs {unstored}: the server "
        "closed the connection); their tasks show their last state there until a later sweep "
        "stores it, and the run log has each end"
    ]
