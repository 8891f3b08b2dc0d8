"""A task that meets an unreachable database before it changed anything hands its message back
to the queue (Reject with requeue) instead of being acknowledged and lost (issue 10, point 4)."""

from types import SimpleNamespace
from unittest import mock

import pytest
from celery.exceptions import Reject
from django.db import OperationalError

from schedules.models import ImportRun
from tasks import runner, tasks
from tests.api_support import SOURCE
from tests.factories import make_import

pytestmark = pytest.mark.django_db

DOWN = OperationalError('connection to server at "db" failed: Connection refused')


@pytest.fixture(autouse=True)
def _no_pause(monkeypatch):
    monkeypatch.setattr(runner, "REQUEUE_PAUSE_SECONDS", 0)


def a_task() -> SimpleNamespace:
    return SimpleNamespace(request=SimpleNamespace(id="t-1", hostname="w@h"))


def test_an_execute_run_message_goes_back_when_the_run_cannot_be_read():
    with (
        mock.patch("schedules.services.load_run", side_effect=DOWN),
        pytest.raises(Reject) as rejected,
    ):
        runner.execute(42, a_task())

    assert rejected.value.requeue is True
    # In plain words: psycopg's text names the database's host, for the worker's log only
    assert str(rejected.value.reason) == runner.DATABASE_UNREACHABLE
    assert '"db"' not in str(rejected.value.reason)


@pytest.mark.django_db(transaction=True)  # the hand-back closes the connection
def test_an_execute_run_message_goes_back_when_the_claim_cannot_be_written(alice):
    # Given a queued run whose claim meets a dead database
    imp = make_import(alice, SOURCE)
    run = ImportRun.objects.create(scheduled_import=imp, trigger="api")

    with (
        mock.patch("schedules.services.claim_run", side_effect=DOWN),
        pytest.raises(Reject) as rejected,
    ):
        runner.execute(run.pk, a_task())

    # Then the message is handed back and the run waits, untouched, for a worker that can
    assert rejected.value.requeue is True
    run.refresh_from_db()
    assert (run.status, run.attempts) == ("queued", 0)


def test_in_the_foreground_the_database_error_is_simply_raised():
    with (
        mock.patch("schedules.services.load_run", side_effect=DOWN),
        pytest.raises(OperationalError),
    ):
        runner.execute(42)


def test_a_scheduled_tick_goes_back_when_the_database_is_unreachable():
    with (
        mock.patch("schedules.services.dispatch_scheduled_tick", side_effect=DOWN),
        pytest.raises(Reject) as rejected,
    ):
        tasks.dispatch_scheduled_import.run(7, "2026-12-01T00:00:00+00:00")

    assert rejected.value.requeue is True
