"""A run's task that announced its retry after the run had already ended shows the run's end
in Flower, not RETRY (chaos hunt): the retried message reached another worker, whose fast second
attempt ended the run before the first worker's `task-retried` event left; Celery lets RETRY
overwrite any state, and Flower kept RETRY for a run that succeeded (1 run in 2,103 of a soak
under faults). The worker's request checks the run once it announced the retry."""

from types import SimpleNamespace

import pytest
from celery.contrib.testing.mocks import TaskMessage
from celery.exceptions import Retry

from project.celery import app
from project.task_class import ImportbeatRequest
from schedules.services import EXECUTE_RUN
from tasks import lost_tasks
from tasks import tasks as _registered  # noqa: F401 (registers execute_run)
from tests.api_support import SOURCE, make_run
from tests.factories import make_import

pytestmark = pytest.mark.django_db


class Events:
    enabled = True

    def __init__(self) -> None:
        self.sent: list[str] = []

    def send(self, type, **fields) -> None:
        self.sent.append(type)


@pytest.fixture
def ended(monkeypatch) -> list[tuple[str, str, str]]:
    """The tasks whose final state was sent again: (task id, run status, reporter)."""
    calls: list[tuple[str, str, str]] = []
    monkeypatch.setattr(
        lost_tasks,
        "end_lost_task",
        lambda task_id, run, reporter: calls.append((task_id, run.status, reporter)),
    )
    real = lost_tasks.end_retried_task
    monkeypatch.setattr(
        lost_tasks,
        "end_retried_task",
        lambda *args, **kwargs: real(*args, **kwargs, in_background=False),
    )
    return calls


def retried(run, events: Events) -> None:
    """The worker's request of the run's task announces its retry."""
    message = TaskMessage(EXECUTE_RUN, id=run.celery_task_id, args=[run.pk])
    request = ImportbeatRequest(
        message, app=app, task=app.tasks[EXECUTE_RUN], hostname="worker@a", eventer=events
    )
    try:
        raise Retry("run waits", exc=RuntimeError("HTTP 503"))
    except Retry as retry:
        info = SimpleNamespace(exception=SimpleNamespace(exc=retry.exc), traceback="")
    request.on_retry(info)


@pytest.mark.parametrize("status", ["succeeded", "failed", "cancelled"])
def test_a_retry_announced_after_its_run_ended_sends_the_runs_end_again(alice, ended, status):
    # Given a run another worker ended while this one announced its retry (its second
    # attempt, there; a run cancelled while it waited for the retry stays REVOKED instead:
    # tests/test_a_run_cancelled_right_after_its_retry_was_announced_stays_revoked_in_flower.py)
    run = make_run(make_import(alice, SOURCE), status, celery_task_id="task-7", attempts=2)
    events = Events()

    # When this worker's request announces the retry
    retried(run, events)

    # Then the retry is announced, and the run's end after it, from this worker
    assert events.sent == ["task-retried"]
    assert ended == [("task-7", status, "worker@a")]


def test_a_retry_whose_run_still_waits_sends_nothing_more(alice, ended):
    run = make_run(make_import(alice, SOURCE), "retrying", celery_task_id="task-8")
    events = Events()

    retried(run, events)

    assert events.sent == ["task-retried"]
    assert ended == []
