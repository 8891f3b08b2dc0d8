"""A run of `manage.py run_import` whose process died tells Flower of no task when the sweep
finds it lost (review1).

Such a run carries a task id of its own, which no message ever had: the sweep told Flower that
task failed, from its own worker, and Flower listed a nameless FAILURE it had never seen.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from celery.events.dispatcher import EventDispatcher

from common import database_clock
from schedules.models import ImportRun
from tasks import maintenance
from tests.api_support import SOURCE
from tests.factories import make_import

pytestmark = pytest.mark.django_db


def test_the_sweep_ends_a_lost_foreground_run_and_tells_flower_nothing(alice, monkeypatch):
    # Given a run_import run whose process died an hour ago (no worker ran it)
    imp = make_import(alice, SOURCE, max_retries=0)
    long_ago = database_clock.now() - timedelta(hours=1)
    run = ImportRun.objects.create(
        scheduled_import=imp, trigger=ImportRun.Trigger.MANUAL, status="running",
        celery_task_id=str(uuid.uuid4()), worker="", attempts=1, heartbeat_at=long_ago,
        started_at=long_ago, attempt_started_at=long_ago,
    )  # fmt: skip
    told = []
    monkeypatch.setattr(EventDispatcher, "send", lambda self, kind, **fields: told.append(fields))

    # When the sweep passes
    maintenance.sweep_runs(reporter="celery@sweeper")

    # Then the run is ended as lost, and Flower hears of no task of it
    run.refresh_from_db()
    assert run.status == "failed"
    assert [fields for fields in told if fields.get("uuid") == run.celery_task_id] == []
