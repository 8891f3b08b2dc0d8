"""The maintenance sweep never leaves a run stuck: a `running` run whose worker went silent is
queued again (or failed once its retries are spent, or `timed_out` when the hard limit killed
it); a live one is left alone. A waiting run's lost message is reconciliation's, not the
sweep's (tests/test_reconcile_sends_a_lost_retry_again_once.py)."""

from datetime import timedelta
from unittest import mock

import pytest
from django.utils import timezone

from schedules.models import ImportRun
from tasks import locks, maintenance
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
