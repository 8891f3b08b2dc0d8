"""What an attempt the sweep took for lost, its worker alive after all, may still write, and
what keeps the note it leaves on the run (sweepnote hunt; the process tests are in
test_a_run_the_sweep_sent_again_while_its_worker_was_alive_says_so.py).

- Its run ended as lost under its own task (its retries spent): the attempt's counts, written
  with its rows, landed on the failed run, its rows committed with them.
- Its run sent again under another task: the next attempt's retry or counts, written from what
  that attempt read at its claim, wiped the note the first one left meanwhile.
"""

from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from schedules import services
from schedules.models import ImportRun
from tests.api_support import SOURCE, make_run
from tests.factories import make_import

pytestmark = pytest.mark.django_db


def silent_attempt(owner, *, retries: int) -> ImportRun:
    """A running attempt (task attempt-1) the sweep finds silent for a minute."""
    imp = make_import(owner, SOURCE, timeout_seconds=300, max_retries=retries)
    since = timezone.now() - timedelta(minutes=1)
    return make_run(imp, "running", attempts=1, celery_task_id="attempt-1", started_at=since,
                    attempt_started_at=since, heartbeat_at=since)  # fmt: skip


def alive(run: ImportRun, task: str, attempts: int) -> ImportRun:
    """The run as an attempt of `task` holds it in memory (read at its claim)."""
    held = services.load_run(run.pk)
    held.celery_task_id, held.attempts, held.status = task, attempts, "running"
    return held


def test_an_attempt_whose_run_was_ended_as_lost_writes_no_counts_and_stops(alice):
    # Given an attempt the sweep ended as lost, its retries spent, its worker alive after all
    run = silent_attempt(alice, retries=0)
    assert services.recover_lost_run(run.pk, stale_before=timezone.now()).status == "failed"
    attempt = alive(run, "attempt-1", 1)

    # When it reaches its last safe point with its rows, and asks whether to stop
    with transaction.atomic():
        written = services.record_committed_counts(attempt, services.RunCounts(rows_read=5))
    said = services.cancel_requested(run.pk, run.scheduled_import_id, task_id="attempt-1")

    # Then nothing is written (its rows roll back), and it is told its run ended under it
    assert written is False
    assert said == services.ENDED_WHILE_RUNNING
    run.refresh_from_db()
    assert (run.status, run.rows_read, run.rows_committed_at) == ("failed", 0, None)
    # ... and its entry says it was alive and stopped
    assert services.note_sent_again_while_alive(attempt)
    run.refresh_from_db()
    assert [a.get("ended") for a in run.error_details["attempts"]] == [services.STOPPED_ALIVE_ENDED]


def test_the_note_of_an_attempt_sent_again_stays_through_the_next_attempts_writes(alice):
    # Given a run the sweep sent again, whose next attempt (attempt-2) holds it in memory
    run = silent_attempt(alice, retries=3)
    resent = services.recover_lost_run(run.pk, stale_before=timezone.now())
    ImportRun.objects.filter(pk=run.pk).update(status="running", attempts=2)
    ImportRun.objects.filter(pk=run.pk).update(celery_task_id="attempt-2")
    second = alive(run, "attempt-2", 2)
    assert resent.error_details["attempts"][0]["task"] == "attempt-1"

    # When the first attempt, alive after all, stops and says so
    assert services.note_sent_again_while_alive(alive(run, "attempt-1", 1))
    # ... and the second one fails and is retried, then a third writes its counts
    assert services.mark_retrying(second, "the server answered HTTP 503", 1.0)
    ImportRun.objects.filter(pk=run.pk).update(status="running", attempts=3)  # its claim
    third = alive(run, "attempt-2", 3)
    with transaction.atomic():
        assert services.record_committed_counts(third, services.RunCounts(rows_read=5))

    # Then the first attempt's note is still on its entry, beside the second's failure
    run.refresh_from_db()
    entries = run.error_details["attempts"]
    assert [(a["attempt"], a.get("ended")) for a in entries] == [
        (1, services.STOPPED_ALIVE),
        (2, None),
    ]
    # ... and it is noted once
    assert not services.note_sent_again_while_alive(alive(run, "attempt-1", 1))
