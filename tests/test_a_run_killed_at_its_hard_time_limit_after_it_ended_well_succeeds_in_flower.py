"""A run whose attempt its worker killed at the hard time limit, but which ended well (its rows
had committed, so it ends succeeded or partial; or its owner had asked it to stop, so it ends
cancelled), succeeds in Flower with the run's summary, as the run log, the API and the admin
say. Its task failed there, "run 11 succeeded: ", and Flower's Failed counter, which counts
events, counted it: the worker's request now tells Flower a success instead of the failure.
A run that ended timed out still fails its task in its words, told once (Celery tells the kill
twice, and Flower counted two failed tasks for it).

Driven here as the worker's pool tells a kill: the job's result (TimeLimitExceeded wrapped by
billiard), then the hard timeout.
"""

import threading

import pytest
from billiard.einfo import ExceptionInfo, ExceptionWithTraceback
from celery.contrib.testing.mocks import TaskMessage
from celery.exceptions import TimeLimitExceeded
from django.utils import timezone

from project.celery import app
from project.task_class import ImportbeatRequest
from schedules.models import ImportRun
from schedules.services import EXECUTE_RUN
from tasks import tasks as _registered  # noqa: F401 (registers execute_run)
from tasks.killed_runs import END_KILLED_RUN
from tests.api_support import SOURCE
from tests.factories import make_import

pytestmark = pytest.mark.django_db(transaction=True)

HARD_LIMIT = 330


class Events:
    enabled = True

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict]] = []

    def send(self, type, **fields) -> None:
        self.sent.append((type, fields))


def a_running_run(owner, **how) -> ImportRun:
    imp = make_import(owner, SOURCE, timeout_seconds=300)
    return ImportRun.objects.create(
        scheduled_import=imp, trigger="api", status="running", attempts=1,
        celery_task_id="attempt-1", started_at=timezone.now(), **how,
    )  # fmt: skip


def killed_at_its_hard_time_limit(run: ImportRun) -> Events:
    """The worker's request of the run's task, its attempt killed as the pool tells it."""
    events = Events()
    message = TaskMessage(EXECUTE_RUN, id=run.celery_task_id, args=[run.pk])
    request = ImportbeatRequest(
        message, app=app, task=app.tasks[EXECUTE_RUN], hostname="worker@a", eventer=events
    )
    request.time_limits = (HARD_LIMIT, 300)
    try:
        raise TimeLimitExceeded(HARD_LIMIT)
    except TimeLimitExceeded as killed:
        info = ExceptionInfo()
        info.exception = ExceptionWithTraceback(killed, "")
    request.on_failure(info)
    request.on_timeout(soft=False, timeout=HARD_LIMIT)
    for thread in threading.enumerate():
        if thread.name == "importbeat-hand-on":
            thread.join(10)
    return events


def finals(events: Events) -> list[tuple[str, dict]]:
    return [
        (type, fields) for type, fields in events.sent if type in ("task-succeeded", "task-failed")
    ]


@pytest.mark.parametrize(
    ("how", "ends"),
    [
        ({"rows_committed_at": timezone.now(), "rows_read": 3, "rows_inserted": 3}, "succeeded"),
        (
            {
                "rows_committed_at": timezone.now(),
                "rows_read": 3,
                "rows_inserted": 2,
                "rows_failed": 1,
            },
            "partial",
        ),
        ({"cancel_requested_at": timezone.now()}, "cancelled"),
    ],
    ids=["rows_committed", "some_rows_refused", "cancel_asked"],
)
def test_a_killed_run_that_ended_well_succeeds_in_flower_with_its_summary(alice, how, ends):
    # Given alice's run, running, that had ended well before its attempt stuck
    run = a_running_run(alice, **how)

    # When its worker kills the attempt at its hard time limit
    events = killed_at_its_hard_time_limit(run)

    # Then the run ends as it went, and Flower is told one success with the run's summary,
    # no failure
    run.refresh_from_db()
    assert run.status == ends
    told = finals(events)
    assert [type for type, _fields in told] == ["task-succeeded"]
    result = told[0][1]["result"]
    assert f"'run_id': {run.pk}" in result
    assert f"'status': '{ends}'" in result
    assert f"'rows_read': {run.rows_read}" in result


def test_a_killed_run_that_timed_out_still_fails_in_flower_in_its_words(alice):
    # Given alice's run, running, nothing committed and no one asking it to stop
    run = a_running_run(alice)

    # When its worker kills the attempt at its hard time limit
    events = killed_at_its_hard_time_limit(run)

    # Then the run times out, and its task fails in the run's words, never succeeds
    run.refresh_from_db()
    assert run.status == "timed_out"
    # ... once: Celery tells the kill twice, and Flower counted two failed tasks
    told = finals(events)
    assert [type for type, _fields in told] == ["task-failed"]
    words = f"run {run.pk} timed_out: the run exceeded its 300s time limit (killed)"
    assert words in told[0][1]["exception"]


def test_a_killed_task_that_is_not_a_runs_still_fails_in_flower_saying_its_time_limit(alice):
    # Given a task that is no run's attempt, killed at its hard time limit
    events = Events()
    message = TaskMessage(END_KILLED_RUN, id="end-1", args=[])
    request = ImportbeatRequest(
        message, app=app, task=app.tasks[END_KILLED_RUN], hostname="worker@a", eventer=events
    )
    request.on_timeout(soft=False, timeout=HARD_LIMIT)

    # Then it fails saying its time limit
    told = finals(events)
    assert [type for type, _fields in told] == ["task-failed"]
    assert "killed at its hard time limit of 330s" in told[0][1]["exception"]


def test_a_run_its_attempt_had_ended_before_the_kill_succeeds_in_flower(alice):
    # Given a run its attempt finished, then stuck past its hard time limit as it handed on
    imp = make_import(alice, SOURCE, timeout_seconds=300)
    now = timezone.now()
    run = ImportRun.objects.create(
        scheduled_import=imp, trigger="api", status="succeeded", attempts=1,
        celery_task_id="attempt-1", started_at=now, finished_at=now, rows_read=3,
        rows_inserted=3, rows_committed_at=now,
    )  # fmt: skip

    # When its task is killed, then Flower hears it succeeded, as the run log says (review2)
    told = finals(killed_at_its_hard_time_limit(run))
    assert [type for type, _fields in told] == ["task-succeeded"]
    assert "'status': 'succeeded'" in told[0][1]["result"]
