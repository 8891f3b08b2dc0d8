"""A run's task that stored a state before its run ended (a RETRY while it waited its turn, a
PROGRESS while it ran) stores its end over it. A run that waited in its owner's line and then
succeeded said "waiting its turn" (RETRY) in the result backend for a day, and a long run's
task said PROGRESS after its success: Flower's result page and AsyncResult disagreed with the
run log (SPEC 4). A run that never waited stores nothing still (issue 15), and a parked run's
RETRY stays while it waits."""

import pytest
from celery.result import AsyncResult

from tasks import fairness
from tasks.engine import progress as engine_progress
from tests.factories import PRODUCTS_CSV, make_import
from tests.task_states_support import delivered, run_of

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_run_that_waited_its_turn_and_succeeded_shows_its_end(alice, csv_server, settings, sent):
    # Given alice at her cap of 1 (a run of hers admitted) and a second run of hers
    settings.MAX_RUNNING_PER_OWNER = 1
    url = csv_server.serve("/p.csv", PRODUCTS_CSV)
    holder = run_of(make_import(alice, url, name="first", dataset="first"))
    assert fairness.admit(holder)
    waiting = run_of(make_import(alice, url, name="second", dataset="second"))

    # When its message comes: it is parked in her line, its task RETRY while it waits
    delivered(waiting)
    parked = AsyncResult(waiting.celery_task_id)
    assert parked.state == "RETRY"
    assert "waiting its turn" in str(parked.info)
    waiting_traceback = parked.traceback

    # ... and once the first run's slot is given back, its message comes again and it runs
    fairness.withdraw(holder)
    fairness.hand_on(alice.pk)
    assert sent == [waiting.pk]
    delivered(waiting)

    # Then its task shows its end, as the run log says it, and no traceback
    waiting.refresh_from_db()
    assert waiting.status == "succeeded"
    ended = AsyncResult(waiting.celery_task_id)
    assert ended.state == "SUCCESS", ended.info
    assert ended.info["status"] == "succeeded" and ended.info["run_id"] == waiting.pk
    assert ended.traceback is None
    # (and its wait was stored in words only: the run log says why it waited)
    assert waiting_traceback is None


def test_a_run_that_showed_its_progress_shows_its_end(alice, csv_server, monkeypatch):
    # Given a run whose progress is shown from its start
    monkeypatch.setattr(engine_progress, "VISIBLE_AFTER_SECONDS", 0)
    run = run_of(make_import(alice, csv_server.serve("/p.csv", PRODUCTS_CSV)))

    # When it runs and succeeds
    delivered(run)

    # Then its task shows SUCCESS, not the PROGRESS it showed while it ran
    run.refresh_from_db()
    assert run.status == "succeeded"
    assert AsyncResult(run.celery_task_id).state == "SUCCESS"


def test_a_run_that_never_waited_stores_no_task_state(alice, csv_server, round_trips):
    # Given a small run that nobody made wait
    run = run_of(make_import(alice, csv_server.serve("/p.csv", PRODUCTS_CSV)))
    round_trips.clear()

    # When it runs
    delivered(run)

    # Then it succeeded without a word to the result backend (issue 15)
    run.refresh_from_db()
    assert run.status == "succeeded"
    packed = [b"".join(sent) if isinstance(sent, list) else sent for sent in round_trips]
    assert not [sent for sent in packed if b"celery-task-meta" in sent]
    assert AsyncResult(run.celery_task_id).state == "PENDING"
