"""A state an attempt stores after its task's end (SUCCESS, FAILURE, REVOKED) leaves the end in
place, in the real Redis result backend, and a retry that found the end there is not announced
to Flower.

Regression (latestate hunt): Celery's Redis backend keeps only a SUCCESS. A retry due at once
went to another worker, which failed the run for good and stored FAILURE before the first
worker stored its RETRY: the task said RETRY (AsyncResult, Flower's result page) of a run its
log called failed, and the late `task-retried` made Flower say RETRY until the first worker
told the run's end again, counting two failures of one task. A presumed-lost attempt's
PROGRESS replaced the FAILURE the sweep stored for it the same way."""

import uuid
from types import SimpleNamespace

import pytest
from celery import states
from celery.contrib.testing.mocks import TaskMessage
from celery.exceptions import Retry
from celery.result import AsyncResult

from project.celery import app
from project.task_class import ImportbeatRequest
from schedules.services import EXECUTE_RUN
from tasks.errors import RunFailed
from tasks.tasks import execute_run

pytestmark = pytest.mark.django_db


def stored_state(task_id: str) -> str:
    return AsyncResult(task_id, app=app).backend.get_task_meta(task_id, cache=False)["status"]


def ended(task_id: str, end: str) -> None:
    """The task's end, stored as whoever ends a run's task stores it."""
    backend = app.backend
    if end == states.SUCCESS:
        backend.store_result(task_id, {"run_id": 1, "status": "succeeded"}, states.SUCCESS)
    elif end == states.FAILURE:
        backend.mark_as_failure(task_id, RunFailed("run 1 failed: HTTP 404"), traceback="")
    else:
        backend.mark_as_revoked(task_id, "the run was cancelled")


def late(task_id: str, state: str, error: Exception) -> None:
    """An attempt of the task stores `state` through the task's backend, as Celery's tracer
    stores a retry and the runner its progress."""
    if state == states.RETRY:
        execute_run.backend.mark_as_retry(task_id, error, traceback="")
    else:
        execute_run.backend.store_result(task_id, {"run_id": 1, "bytes_read": 10}, "PROGRESS")


@pytest.mark.parametrize("end", [states.SUCCESS, states.FAILURE, states.REVOKED])
@pytest.mark.parametrize("later", [states.RETRY, "PROGRESS"])
def test_a_state_stored_after_the_tasks_end_leaves_the_end(end, later):
    # Given a run's task whose end is stored (its retried message ran elsewhere and ended)
    task_id = str(uuid.uuid4())
    ended(task_id, end)

    # When the first attempt's worker stores its retry, or an attempt its progress, late
    late(task_id, later, RuntimeError("HTTP 503"))

    # Then the end stays
    assert stored_state(task_id) == end


@pytest.mark.parametrize("before", [None, states.RETRY, "PROGRESS"])
@pytest.mark.parametrize("later", [states.RETRY, "PROGRESS"])
def test_a_state_stored_before_the_end_is_stored_as_before(before, later):
    # Given a task with no state yet, or an attempt's state
    task_id = str(uuid.uuid4())
    if before is not None:
        late(task_id, before, RuntimeError("HTTP 503"))

    # When its next state is stored
    error = RuntimeError("HTTP 502")
    late(task_id, later, error)

    # Then it is the task's state, and a retry is announced as usual
    assert stored_state(task_id) == later
    assert not getattr(error, "importbeat_came_after_the_end", False)


class Events:
    enabled = True

    def __init__(self) -> None:
        self.sent: list[str] = []

    def send(self, type, **fields) -> None:
        self.sent.append(type)


def retry_handled_by_the_main_process(task_id: str, error: Exception) -> Events:
    message = TaskMessage(EXECUTE_RUN, id=task_id, args=[0])
    events = Events()
    request = ImportbeatRequest(
        message, app=app, task=app.tasks[EXECUTE_RUN], hostname="worker@a", eventer=events
    )
    request.acknowledge = lambda: events.sent.append("acknowledged")
    try:
        raise Retry("run 1 fails", exc=error)
    except Retry as retry:
        request.on_retry(SimpleNamespace(exception=retry, traceback=""))
    return events


def test_a_retry_stored_after_the_tasks_end_is_not_announced_to_flower(monkeypatch):
    # Given a run's task that failed for good on another worker
    from tasks import lost_tasks

    told_again: list[str] = []
    monkeypatch.setattr(lost_tasks, "end_retried_task", lambda *a, **k: told_again.append(a[1]))
    task_id = str(uuid.uuid4())
    ended(task_id, states.FAILURE)

    # When the first worker's pool process stores its retry, and its main process handles it
    error = RuntimeError("HTTP 503")
    late(task_id, states.RETRY, error)
    events = retry_handled_by_the_main_process(task_id, error)

    # Then Flower hears no retry (nor the run's end again), and the message is acknowledged
    assert events.sent == ["acknowledged"]
    assert told_again == []
    assert stored_state(task_id) == states.FAILURE
