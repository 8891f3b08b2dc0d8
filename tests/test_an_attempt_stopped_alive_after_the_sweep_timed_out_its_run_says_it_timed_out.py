"""An attempt alive after all, whose run the sweep ended as timed out while its worker was
silent (its time was up), says on its entry that it found the run timed out, in the run's
words (sweep3 hunt). It said "found the run ended as lost" of a run that the log, the API and
the admin call timed out ("the run exceeded its 60s time limit (killed)").

Shown with a Procfile worker paused (SIGSTOP) past its heartbeats in the sweep3 hunt; here in
process, as the runner's stopped attempt writes its note (services.note_sent_again_while_alive).
"""

from datetime import timedelta

import pytest
from django.utils import timezone

from schedules import services
from tests.api_support import SOURCE, make_run
from tests.factories import make_import
from tests.test_an_attempt_taken_for_lost_writes_nothing_and_its_note_stays import alive

pytestmark = pytest.mark.django_db


def test_an_attempt_whose_run_the_sweep_timed_out_says_it_found_it_timed_out(alice):
    # Given an attempt that ran past its import's 60 s, then fell silent for a minute
    imp = make_import(alice, SOURCE, timeout_seconds=60, max_retries=3)
    now = timezone.now()
    run = make_run(
        imp, "running", attempts=1, celery_task_id="attempt-1",
        started_at=now - timedelta(minutes=5), attempt_started_at=now - timedelta(minutes=5),
        heartbeat_at=now - timedelta(minutes=1),
    )  # fmt: skip
    # ... which the sweep ends timed out
    ended = services.recover_lost_run(run.pk, stale_before=now)
    assert ended.status == "timed_out"

    # When its worker, alive after all, is heard from again and stops its attempt
    attempt = alive(run, "attempt-1", 1)
    assert services.cancel_requested(run.pk, imp.pk, task_id="attempt-1") == (
        services.ENDED_WHILE_RUNNING
    )
    assert services.note_sent_again_while_alive(attempt)

    # Then its entry says it found the run timed out, in the run's words, not lost
    run.refresh_from_db()
    entry = next(a for a in run.error_details["attempts"] if "ended" in a)
    assert entry["attempt"] == 1
    assert "ended as lost" not in entry["ended"]
    assert entry["ended"] == (
        "its worker was alive after all: when it was heard from again, it found the run ended "
        f"as timed out ({run.error_message}) and stopped this attempt; nothing of this attempt "
        "was written to the dataset"
    )
    assert run.error_message == "the run exceeded its 60s time limit (killed)"
