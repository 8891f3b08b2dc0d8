"""The maintenance sweep never leaves a run stuck: a `running` run whose worker went silent is
queued again (or failed once its retries are spent, or `timed_out` when the hard limit killed
it); a live one is left alone. A waiting run's lost message is reconciliation's, not the
sweep's (tests/test_reconcile_sends_a_lost_retry_again_once.py)."""

import threading
from datetime import timedelta
from unittest import mock

import pytest
from django.utils import timezone

from schedules.models import ImportRun, ScheduledImport
from tasks import locks, maintenance
from tests.conftest import wait_for
from tests.factories import make_import

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def sent():
    with mock.patch("schedules.services.send_run") as send_run:
        yield send_run


def running_run(owner, name: str, *, silent_s: int, lived_s: int, attempts: int = 1, **policy):
    imp = make_import(owner, "http://127.0.0.1/p.csv", name=name, dataset=name, **policy)
    now = timezone.now()
    return ImportRun.objects.create(
        scheduled_import=imp,
        trigger="schedule",
        status="running",
        attempts=attempts,
        started_at=now - timedelta(seconds=silent_s + lived_s),
        attempt_started_at=now - timedelta(seconds=silent_s + lived_s),
        heartbeat_at=now - timedelta(seconds=silent_s),
        celery_task_id="lost-message",
        worker="celery@dead",  # (its claim's, as a worker's claim writes it)
    )


def test_a_silent_running_run_is_queued_again_with_the_lost_attempt_recorded(alice, sent):
    run = running_run(alice, "silent", silent_s=600, lived_s=60)

    assert maintenance.sweep_runs()["recovered"] == 1

    run.refresh_from_db()
    assert run.status == "retrying"
    assert run.celery_task_id != "lost-message"
    assert "was lost (no heartbeat for 600s)" in run.error_details["attempts"][-1]["error"]
    assert [call.args[0].pk for call in sent.call_args_list] == [run.pk]


def test_a_run_whose_worker_still_holds_the_lease_is_left_alone(alice, sent):
    run = running_run(alice, "alive", silent_s=600, lived_s=60)
    lease = locks.run_lease(run.scheduled_import_id, run.pk)
    assert lease.acquire()
    try:
        assert maintenance.sweep_runs()["recovered"] == 0
    finally:
        lease.release()
    run.refresh_from_db()
    assert run.status == "running"
    assert not sent.called


def test_a_run_silent_after_its_whole_timeout_ends_timed_out(alice, sent):
    run = running_run(alice, "killed", silent_s=600, lived_s=130, timeout_seconds=100)

    maintenance.sweep_runs()

    run.refresh_from_db()
    assert run.status == "timed_out"
    assert "exceeded its 100s time limit" in run.error_message
    assert not sent.called


def test_a_silent_run_out_of_retries_fails(alice, sent):
    run = running_run(alice, "spent", silent_s=600, lived_s=10, attempts=4, max_retries=3)

    maintenance.sweep_runs()

    run.refresh_from_db()
    assert run.status == "failed"
    assert "was lost" in run.error_message
    assert not sent.called


def test_a_silent_run_of_an_import_cancelled_since_ends_cancelled(alice, sent):
    # It was queued again: a cancelled import fetched its source once more
    run = running_run(alice, "gone", silent_s=600, lived_s=10, max_retries=3)
    ScheduledImport.objects.filter(pk=run.scheduled_import_id).update(status="cancelled")

    maintenance.sweep_runs()

    run.refresh_from_db()
    assert run.status == "cancelled"
    assert run.error_message.startswith(
        "cancelled with its import (the worker running attempt 1 was lost"
    )
    assert not sent.called


def test_a_run_with_a_fresh_heartbeat_is_left_alone(alice, sent):
    run = running_run(alice, "fresh", silent_s=1, lived_s=600)

    assert maintenance.sweep_runs() == {
        "recovered": 0,
        "notifications": 0,
        "replaced_credentials": 0,
    }
    run.refresh_from_db()
    assert run.status == "running"


def test_the_sweep_leaves_a_queued_run_to_reconciliation(alice, sent):
    # Given a queued run waiting long, its message perhaps lost
    imp = make_import(alice, "http://127.0.0.1/p.csv")
    ImportRun.objects.create(
        scheduled_import=imp,
        trigger="schedule",
        status="queued",
        queued_at=timezone.now() - timedelta(hours=2),
    )

    # When the sweep runs, then it sends nothing: reconciliation asks the broker first
    maintenance.sweep_runs()
    assert not sent.called


@pytest.fixture
def flowers_state():
    """What Flower makes of the cluster's events (celery.events.state, which Flower keeps),
    heard on the test broker as Flower hears them."""
    from celery.events.state import State

    from project.celery import app

    state, heard = State(), threading.Event()

    def hear(event: dict) -> None:
        state.event(event)
        heard.set()

    with app.connection_for_read() as connection:
        receiver = app.events.Receiver(connection, handlers={"*": hear})
        listening = threading.Thread(target=lambda: receiver.capture(wakeup=False), daemon=True)
        listening.start()
        # The receiver is bound once an event of ours comes back through it.
        with app.events.default_dispatcher(hostname="celery@lost-host") as dispatcher:
            while not heard.wait(0.2):
                dispatcher.send("task-started", uuid="lost-message")
        yield state
        receiver.should_stop = True
        listening.join(5)


@pytest.mark.parametrize(
    ("lived_s", "retries", "state", "said"),
    [
        (60, 3, "FAILURE", "was lost (no heartbeat for 600s); queued again as task "),
        (60, 0, "FAILURE", "failed: the worker running attempt 1 was lost"),
        (130, 3, "FAILURE", "timed_out: the run exceeded its 100s time limit (killed)"),
    ],
)
def test_the_lost_attempts_task_ends_in_flower_as_the_sweep_resolved_its_run(
    alice, sent, flowers_state, lived_s, retries, state, said
):
    # Given a run whose whole worker was killed, its task STARTED in Flower on the dead worker
    run = running_run(
        alice, "killed", silent_s=600, lived_s=lived_s, timeout_seconds=100, max_retries=retries
    )
    assert flowers_state.tasks["lost-message"].state == "STARTED"

    # When a worker's sweep resolves the run
    assert maintenance.sweep_runs(reporter="celery@sweeper")["recovered"] == 1

    # Then the lost attempt's task ends in Flower, in the run's words, counted on the sweeping
    # worker (the dead one is not made to look alive)
    task = flowers_state.tasks["lost-message"]
    wait_for(lambda: task.state != "STARTED", 30, what="the lost task's end in Flower")
    run.refresh_from_db()
    assert task.state == state
    assert said in task.exception and f"run {run.pk}" in task.exception
    if run.status == "retrying":
        assert task.exception.endswith(run.celery_task_id)
    assert task.worker.hostname == "celery@sweeper"
