"""What the live attempt of a run the sweep ended (its worker silent: paused, or cut off from
the database and Redis, then heard from again) may still do to that run (reviewA hunt).

- A run its owner asked to stop while its worker was silent, which the sweep then ended
  `cancelled` in the owner's words: when that worker was heard from again, its attempt was
  told its run had been "ended while it ran, its worker taken for lost", and it added an entry
  to the run log saying it "found the run ended as lost" (the worker logged that the sweep took
  it for lost) on a run that says "cancelled by alice while running". It now stops as a
  cancelled attempt does, in the owner's words, and the run log stays as the cancel left it.
- A run the sweep ended as lost while its attempt, alive, was failing on a server error: the
  attempt, told nothing yet, marked the failed run `retrying`; its retry ran it again, the end
  of a run its owner had been told failed.
- Its progress, reported before its safe point stopped it, was written on the ended run: a
  failed run's rows read changed after its end.
"""

import pytest
from django.utils import timezone

from schedules import services
from schedules.models import ImportRun
from tasks import runner
from tasks.engine.progress import stop_if_cancelled
from tasks.errors import RunCancelled, RunDeleted
from tests.test_an_attempt_taken_for_lost_writes_nothing_and_its_note_stays import (
    alive,
    silent_attempt,
)

pytestmark = pytest.mark.django_db


def test_a_cancelled_run_the_sweep_ended_stops_its_live_attempt_in_its_owners_words(alice):
    # Given a running attempt (task attempt-1), silent for a minute, that alice asked to stop
    run = silent_attempt(alice, retries=3)
    services.cancel_run(run, alice)
    # ... which the sweep ends cancelled, as she asked
    ended = services.recover_lost_run(run.pk, stale_before=timezone.now())
    assert ended.status == "cancelled"
    said = ended.error_message
    assert said.startswith("cancelled by alice")

    # When its worker, alive after all, reaches a safe point and stops as the runner does
    attempt = alive(run, "attempt-1", 1)
    try:
        stop_if_cancelled(attempt)
    except RunDeleted as deleted:
        stopped = runner._deleted(attempt, str(deleted))["error"]
    except RunCancelled as cancelled:
        stopped = str(cancelled)
        services.finish_run(attempt, ImportRun.Status.CANCELLED, error=stopped)
    else:
        pytest.fail("the attempt of a cancelled run went on")

    # Then it stops in alice's words, and the run log is as her cancel left it
    assert stopped.startswith("cancelled by alice while running")
    run.refresh_from_db()
    assert (run.status, run.error_message) == ("cancelled", said)
    assert not [a for a in run.error_details.get("attempts", []) if "ended" in a]


def test_a_run_the_sweep_ended_as_lost_is_not_retried_by_its_live_attempt(alice):
    # Given an attempt the sweep ended as lost, its retries spent, its worker alive after all
    run = silent_attempt(alice, retries=1)
    ImportRun.objects.filter(pk=run.pk).update(attempts=2)
    attempt = alive(run, "attempt-1", 2)
    assert services.recover_lost_run(run.pk, stale_before=timezone.now()).status == "failed"

    # When that attempt fails on a server error and asks for a retry, as the runner does
    retried = services.mark_retrying(attempt, "the server answered HTTP 503", 30.0)

    # Then there is none: the run stays failed, as its owner was told
    assert retried is False
    run.refresh_from_db()
    assert run.status == "failed"
    assert run.error_message.startswith("the worker running attempt 2 was lost")


def test_a_run_the_sweep_ended_as_lost_keeps_its_counts_from_its_live_attempts_progress(alice):
    # Given an attempt the sweep ended as lost, its retries spent, its worker alive after all
    run = silent_attempt(alice, retries=0)
    ended = services.recover_lost_run(run.pk, stale_before=timezone.now())
    attempt = alive(run, "attempt-1", 1)

    # When that attempt reports its progress (before the safe point that stops it)
    attempt.phase, attempt.rows_read, attempt.bytes_read = "staging", 5313, 131_072
    services.record_progress(attempt)

    # Then the failed run is as the sweep ended it
    run.refresh_from_db()
    assert (run.status, run.phase, run.rows_read, run.bytes_read) == (
        "failed", ended.phase, ended.rows_read, ended.bytes_read,
    )  # fmt: skip
