"""A run's retry is sent whatever strikes between its attempt and the sending (review).

Regression of 37bafe6: the retry is now published by execute() after the lease is released
and the owner's slot handed on (fairness.hand_on: a Redis script, a query, maybe the sending of
parked runs). The run is already `retrying` ("attempt 1 failed, retrying in 0s"), but a soft
time limit striking in that stretch (or in the lease's release) replaces the pending retry:
no message is sent, the task ends FAILURE with SoftTimeLimitExceeded in Flower, and the run
waits for reconciliation (STALE_QUEUED_SECONDS, half an hour). Before 37bafe6 the retry had
been sent from inside the attempt, and the same strike lost nothing.
"""

import pytest
from celery.exceptions import SoftTimeLimitExceeded

from schedules.models import ImportRun
from tasks import fairness, locks, runner
from tests.bound_task import BoundTask, Retried
from tests.factories import make_import

pytestmark = pytest.mark.django_db


def strikes_once(real):
    struck: list[bool] = []

    def call(*args, **kwargs):
        if not struck:
            struck.append(True)
            raise SoftTimeLimitExceeded()
        return real(*args, **kwargs)

    return call


@pytest.fixture
def retried_run(alice, csv_server):
    imp = make_import(
        alice, csv_server.serve("/busy.csv", b"", status=503), retry_backoff_seconds=0
    )
    return ImportRun.objects.create(scheduled_import=imp, trigger="manual")


def test_the_retry_is_sent_when_the_time_limit_strikes_as_the_slot_is_handed_on(
    retried_run, monkeypatch
):
    # Given a run whose source answers 503, and a time limit striking as its slot is handed on
    monkeypatch.setattr(fairness, "hand_on", strikes_once(fairness.hand_on))
    task = BoundTask()

    # When a worker runs its attempt
    with pytest.raises((Retried, SoftTimeLimitExceeded)):
        runner.execute(retried_run.pk, task)

    # Then the run that says it is retrying has its retry on its way
    retried_run.refresh_from_db()
    assert retried_run.status == "retrying"
    assert task.countdowns == [0]


def test_the_retry_is_sent_when_the_time_limit_strikes_as_the_lease_is_released(
    retried_run, monkeypatch
):
    # Given a run whose source answers 503, and a time limit striking as its lease is released
    monkeypatch.setattr(locks.Lease, "release", strikes_once(locks.Lease.release))
    task = BoundTask()

    # When a worker runs its attempt
    with pytest.raises((Retried, SoftTimeLimitExceeded)):
        runner.execute(retried_run.pk, task)

    # Then the run that says it is retrying has its retry on its way
    retried_run.refresh_from_db()
    assert retried_run.status == "retrying"
    assert task.countdowns == [0]
