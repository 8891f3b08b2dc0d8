"""Runs whose messages a test hands to the real task in this process (Celery's tracer, the real
Redis result backend), to read the state the task leaves there: the tests of what a run's task
stores at its end, at a cancel and at a deletion."""

from __future__ import annotations

import uuid

from schedules.models import ImportRun, ScheduledImport
from tasks import fairness
from tasks.tasks import execute_run
from tests.factories import make_import


def run_of(imp: ScheduledImport, trigger: str = "api") -> ImportRun:
    """A queued run of `imp`, with the task id its message carries."""
    return ImportRun.objects.create(
        scheduled_import=imp, trigger=trigger, celery_task_id=str(uuid.uuid4())
    )


def delivered(run: ImportRun) -> None:
    """The run's message, handled by a worker's pool process (here, in this one)."""
    execute_run.apply(args=[run.pk], task_id=run.celery_task_id)


def second_run_of_an_owner_at_her_cap(owner, url: str) -> ImportRun:
    """A queued run of `owner`'s whose first run, of another import, holds her only slot
    (MAX_RUNNING_PER_OWNER=1, set by the test): her line parks it when it is delivered."""
    assert fairness.admit(run_of(make_import(owner, url, name="first", dataset="first")))
    return run_of(make_import(owner, url, name="second", dataset="second"))
