"""How an attempt stopped alive after the sweep took it for lost ends its task (flowerend hunt):
the sweep told Flower its end already, FAILURE in the run's words, and the task ended SUCCESS
after it ("cancelled"), which Flower let overwrite the FAILURE and counted as a second end.
It now fails as told, and its worker sends no second `task-failed`; an attempt nobody told of
(another run under its id after a database restore) still tells its own end."""

import pytest
from billiard.einfo import ExceptionInfo
from celery.contrib.testing.mocks import TaskMessage
from celery.exceptions import Ignore

from project.celery import app
from project.task_class import ImportbeatRequest
from schedules import services
from schedules.services import EXECUTE_RUN
from tasks import lost_tasks
from tasks import tasks as _registered  # noqa: F401 (registers execute_run)
from tasks.errors import RunFailed
from tests.api_support import SOURCE, make_run
from tests.factories import make_import
from tests.test_a_retried_task_whose_run_has_ended_shows_the_runs_end_in_flower import Events

pytestmark = pytest.mark.django_db

LOST = "the worker running attempt 1 was lost (no heartbeat for 6s)"


def stopped(why: str) -> dict:
    return {"run_id": 0, "status": "cancelled", "error": why}


def test_an_attempt_whose_run_the_sweep_ended_fails_in_the_runs_words(alice):
    run = make_run(make_import(alice, SOURCE), "failed", celery_task_id="t1", error_message=LOST)

    told = lost_tasks.told_when_taken_for_lost("t1", run.pk, stopped(services.ENDED_WHILE_RUNNING))

    assert isinstance(told, lost_tasks.ToldFailed)
    assert str(told) == f"run {run.pk} failed: {LOST}"


def test_an_attempt_whose_run_the_sweep_cancelled_ends_without_an_event(alice):
    run = make_run(make_import(alice, SOURCE), "cancelled", celery_task_id="t1")

    told = lost_tasks.told_when_taken_for_lost("t1", run.pk, stopped(services.ENDED_WHILE_RUNNING))

    assert isinstance(told, Ignore)


def test_an_attempt_whose_run_the_sweep_sent_again_fails_in_its_entrys_words(alice):
    entry = {"attempt": 1, "error": LOST, "sent_again": "sent again by the sweep", "task": "t1"}
    run = make_run(
        make_import(alice, SOURCE), "running", celery_task_id="t2",
        error_details={"attempts": [entry]},
    )  # fmt: skip

    told = lost_tasks.told_when_taken_for_lost(
        "t1", run.pk, stopped(services.TAKEN_OVER_WHILE_RUNNING)
    )

    assert isinstance(told, lost_tasks.ToldFailed)
    assert str(told) == f"run {run.pk}: {LOST}; sent again by the sweep"


@pytest.mark.parametrize(
    "why", [services.TAKEN_OVER_WHILE_RUNNING, services.RUN_DELETED_WHILE_RUNNING]
)
def test_an_attempt_nobody_told_of_tells_its_own_end(alice, why):
    # another run under its id (a database restore), or its run deleted
    run = make_run(make_import(alice, SOURCE), "running", celery_task_id="t2")

    assert lost_tasks.told_when_taken_for_lost("t1", run.pk, stopped(why)) is None


@pytest.mark.parametrize(
    ("error", "sent"),
    [
        (lost_tasks.ToldFailed("run 1 failed: lost"), []),
        (RunFailed("run 1 failed"), ["task-failed"]),
    ],
)
def test_a_failure_told_already_is_not_sent_again(error, sent):
    events = Events()
    message = TaskMessage(EXECUTE_RUN, id="t1", args=[1])
    request = ImportbeatRequest(
        message, app=app, task=app.tasks[EXECUTE_RUN], hostname="worker@a", eventer=events
    )
    try:
        raise error
    except RunFailed:
        info = ExceptionInfo()
    request.on_failure(info)

    assert events.sent == sent
