"""A run cancelled, skipped (its import paused) or deleted before any worker took its message
stored no task state, and its message, when it comes, stores none either. The end stored over
a waiting run's state (tasks.tasks._ended) took the words "cancelled ..." or "skipped ..." in
the run's message for a note of its wait, and a deleted run for one that may have waited: each
such message wrote a state the task never had (REVOKED, or SUCCESS of a skipped run), a GET and
a SETEX kept a day, where the cancel itself stores nothing of a task no worker took
(schedules.revoked_tasks). A backlog of a paused import was a write per tick."""

import pytest

from schedules import services
from schedules.models import ImportRun
from tests.factories import PRODUCTS_CSV, make_import
from tests.task_states_support import delivered, run_of

pytestmark = pytest.mark.django_db(transaction=True)


def task_states_sent(round_trips: list) -> list[bytes]:
    packed = [b"".join(sent) if isinstance(sent, list) else sent for sent in round_trips]
    return [sent for sent in packed if b"celery-task-meta" in sent]


def test_a_run_cancelled_before_its_message_came_stores_no_task_state(
    alice, csv_server, round_trips
):
    # Given a queued run no worker took, cancelled by alice
    run = run_of(make_import(alice, csv_server.serve("/p.csv", PRODUCTS_CSV)))
    services.cancel_run(run, alice)
    round_trips.clear()

    # When its message comes
    delivered(run)

    # Then nothing is said to the result backend
    assert not task_states_sent(round_trips)


def test_a_run_skipped_by_a_pause_before_its_message_came_stores_no_task_state(
    alice, csv_server, round_trips
):
    # Given a scheduled run no worker took, skipped as its import was paused
    imp = make_import(alice, csv_server.serve("/p.csv", PRODUCTS_CSV))
    run = run_of(imp, trigger="schedule")
    services.pause_import(imp)
    run.refresh_from_db()
    assert run.status == "skipped"
    round_trips.clear()

    # When its message comes
    delivered(run)

    # Then nothing is said to the result backend
    assert not task_states_sent(round_trips)


def test_a_run_deleted_before_its_message_came_stores_no_task_state(alice, csv_server, round_trips):
    # Given a queued run no worker took, deleted
    run = run_of(make_import(alice, csv_server.serve("/p.csv", PRODUCTS_CSV)))
    services.delete_runs(ImportRun.objects.filter(pk=run.pk))
    round_trips.clear()

    # When its message comes
    delivered(run)

    # Then nothing is said to the result backend
    assert not task_states_sent(round_trips)
