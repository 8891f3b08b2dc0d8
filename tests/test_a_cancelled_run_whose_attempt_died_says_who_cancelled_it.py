"""A run its owner cancelled, whose attempt then died before a safe point (killed at its hard
time limit, or its worker lost and found by the sweep), ends in the words every other cancelled
running run ends with (endings hunt): it said "cancelled" alone, where the runner says who asked
and that the dataset was not changed."""

from datetime import timedelta

import pytest
from django.utils import timezone

from schedules import services
from tests.api_support import SOURCE, make_run
from tests.factories import make_import

pytestmark = pytest.mark.django_db

WORDS = "cancelled by alice while running; the dataset was not changed"


def stuck_run_cancelled_by(user):
    """A running attempt, silent for a minute, that `user` asked to stop."""
    imp = make_import(user, SOURCE, timeout_seconds=300)
    silent_since = timezone.now() - timedelta(minutes=1)
    run = make_run(imp, "running", attempts=1, celery_task_id="attempt-1",
                   started_at=silent_since, attempt_started_at=silent_since,
                   heartbeat_at=silent_since)  # fmt: skip
    services.cancel_run(run, user)
    return run


def test_a_cancelled_run_killed_at_its_time_limit_says_who_cancelled_it(alice):
    # Given alice's run, stuck, that she cancelled
    run = stuck_run_cancelled_by(alice)

    # When its worker kills the attempt at its hard time limit
    ended = services.end_killed_run(run.pk, "attempt-1")

    # Then it ends cancelled, in the words of any cancelled running run
    assert (ended.status, ended.error_message) == ("cancelled", WORDS)


def test_a_cancelled_run_whose_worker_was_lost_says_who_cancelled_it(alice):
    # Given alice's run that she cancelled, whose worker then died
    run = stuck_run_cancelled_by(alice)

    # When the sweep finds it lost
    ended = services.recover_lost_run(run.pk, stale_before=timezone.now())

    # Then it ends cancelled, in the same words
    assert (ended.status, ended.error_message) == ("cancelled", WORDS)
