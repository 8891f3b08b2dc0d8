"""A run's soft time limit that strikes while its attempt ends on a lost database ends it
timed out.

Regression (review of this round, tasks/runner.py): it was handed back to the queue "waiting
for a lock".

`database_or_requeue` turns SoftTimeLimitExceeded into Reject(requeue=True) with
WAITED_FOR_THE_DATABASE, meant for the statements before the attempt (the claim waiting for a
lock). The same context manager wraps `_attempt` too, and SoftTimeLimitExceeded left `_attempt`
from its failure handler, whose writes are tried again on a fresh connection for about 16 s
each while the database is away. The message went back with the run still `running`, the
worker logging that it "waited for the database (a lock another session holds)", and the
redelivered message reclaimed the run as a lost attempt with a fresh time budget, never
`timed_out`."""

from __future__ import annotations

from types import SimpleNamespace
from unittest import mock

import pytest
from celery.exceptions import Reject, SoftTimeLimitExceeded
from django.db import OperationalError

from schedules.models import ImportRun
from tasks import runner
from tests.api_support import SOURCE
from tests.factories import make_import

pytestmark = pytest.mark.django_db(transaction=True)

DOWN = OperationalError("server closed the connection unexpectedly")


def a_task() -> SimpleNamespace:
    return SimpleNamespace(
        request=SimpleNamespace(id="t-1", hostname="w@h", timelimit=(630, 600), retries=0)
    )


def test_a_time_limit_striking_while_a_run_ends_on_a_lost_database_times_it_out(alice, monkeypatch):
    monkeypatch.setattr(runner, "REQUEUE_PAUSE_SECONDS", 0)
    imp = make_import(alice, SOURCE, max_retries=3)
    run = ImportRun.objects.create(scheduled_import=imp, trigger="api")

    # Given the database drops the run's connection, and its soft time limit strikes while the
    # attempt asks (again, on a fresh connection) whether it was cancelled
    with (
        mock.patch("tasks.engine.import_run", side_effect=DOWN),
        mock.patch("schedules.services.cancel_requested", side_effect=SoftTimeLimitExceeded()),
    ):
        try:
            runner.execute(run.pk, a_task())
            raised = None
        except Reject as rejected:
            raised = rejected

    # Then the run is over, timed out; its message is not handed back "waiting for a lock"
    run.refresh_from_db()
    assert raised is None or runner.WAITED_FOR_THE_DATABASE not in str(raised.reason), raised.reason
    assert run.status == "timed_out", (run.status, run.error_message)
