"""`POST /runs/{id}/cancel`: a queued or retrying run ends at once, a running one at its next
safe point with the dataset as it was; cancelling an import also ends its retrying runs."""

import threading
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from schedules import services
from schedules.models import ImportRun
from tasks import engine, runner
from tasks.engine import progress
from tests.api_support import API, SOURCE, client_for, make_run
from tests.factories import PRODUCTS_CSV, make_import

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("status", ["queued", "retrying"])
def test_a_waiting_run_is_cancelled_at_once_and_its_message_then_does_nothing(
    alice, csv_server, status
):
    # Given a run of alice's waiting for a worker (queued, or retrying after a failure)
    imp = make_import(alice, csv_server.serve("/p.csv", PRODUCTS_CSV))
    run = make_run(imp, status, attempts=0 if status == "queued" else 1)
    failed = [{"attempt": 1, "error": "the server answered HTTP 503", "retry_in": 30.0}]
    if status == "retrying":
        ImportRun.objects.filter(pk=run.pk).update(
            started_at=timezone.now(), error_details={"attempts": failed}
        )

    # When she cancels it
    response = client_for(alice).post(f"{API}/runs/{run.pk}/cancel")

    # Then it is cancelled, saying by whom, and its message, when it comes, fetches nothing
    assert response.status_code == 200, response.json()
    assert response.json()["status"] == "cancelled"
    assert response.json()["error_message"] == "cancelled by alice"
    # ... the cancel is no failed attempt: the attempts listed are those that failed, and a
    # run that never started took no time
    assert response.json()["error_details"].get("attempts", []) == (
        failed if status == "retrying" else []
    )
    if status == "queued":
        assert response.json()["duration_ms"] == 0
    assert runner.execute(run.pk)["status"] == "cancelled"
    assert csv_server.hits == {}
    assert imp.dataset.records.count() == 0


# Seen at once, the run stops at its first report, before staging; too short to be seen, it
# writes no report and stops at the commit of its merge, which rolls back.
@pytest.mark.parametrize("visible_after", [0, progress.VISIBLE_AFTER_SECONDS])
def test_a_running_run_stops_at_its_next_safe_point_and_leaves_the_data_as_it_was(
    alice, csv_server, monkeypatch, visible_after
):
    monkeypatch.setattr(progress, "VISIBLE_AFTER_SECONDS", visible_after)
    # Given a run whose attempt has fetched and staged the file but not merged it
    imp = make_import(alice, csv_server.serve("/p.csv", PRODUCTS_CSV))
    run = ImportRun.objects.create(scheduled_import=imp, trigger="manual")
    client = client_for(alice)
    answers = []

    def cancel_while_running(progress: dict) -> None:
        if not answers:
            answers.append(client.post(f"{API}/runs/{run.pk}/cancel"))

    # When alice cancels it while it runs
    with engine.listen(cancel_while_running):
        runner.execute(run.pk)

    # Then the cancel was accepted as a request, and the run ended cancelled before its merge
    assert answers[0].status_code == 200
    assert answers[0].json()["status"] == "running"
    assert answers[0].json()["cancel_requested_at"]
    run.refresh_from_db()
    assert run.status == "cancelled"
    assert run.error_message == "cancelled by alice while running; the dataset was not changed"
    assert "attempts" not in run.error_details
    assert run.rows_committed_at is None
    assert imp.dataset.records.count() == 0
    imp.refresh_from_db()
    assert (imp.total_runs, imp.consecutive_failures) == (0, 0)


# The watchdog's look reads the run on a thread of its own: the run must be committed.
@pytest.mark.django_db(transaction=True)
def test_a_running_run_whose_server_went_silent_stops_within_seconds(alice, csv_server, settings):
    # Regression (resources bug 4): cancel was looked for only as bytes came, so a run whose
    # server went silent ended when the rate watchdog or the read timeout did (29 s seen)
    # Given a download whose server goes silent after its first 64 KiB, and no rate minimum
    settings.FETCH_READ_TIMEOUT_SECONDS = 15
    settings.FETCH_MIN_BYTES_PER_SECOND = 0
    silent, release = threading.Event(), threading.Event()

    def go_silent(sent: int) -> None:
        silent.set()
        release.wait(30)

    body = PRODUCTS_CSV + "".join(f"B-{n},Bolt,1.00\n" for n in range(10_000))
    imp = make_import(alice, csv_server.serve("/p.csv", body, after_chunk=go_silent))
    run = ImportRun.objects.create(scheduled_import=imp, trigger="manual")
    asked: list[float] = []

    def cancel_in_the_silence() -> None:
        silent.wait(30)
        time.sleep(1)
        asked.append(time.monotonic())
        try:
            client_for(alice).post(f"{API}/runs/{run.pk}/cancel")
        finally:
            connection.close()  # this thread's own

    # When alice cancels it a second into the silence
    canceller = threading.Thread(target=cancel_in_the_silence)
    canceller.start()
    try:
        runner.execute(run.pk)
        ended = time.monotonic()
    finally:
        release.set()
        canceller.join()

    # Then it ends within a few seconds, cancelled in the usual words
    run.refresh_from_db()
    assert run.status == "cancelled"
    assert run.error_message == "cancelled by alice while running; the dataset was not changed"
    assert ended - asked[0] < 5
    assert imp.dataset.records.count() == 0


@pytest.mark.parametrize("status", ["succeeded", "failed", "cancelled"])
def test_a_finished_run_cannot_be_cancelled(alice, status):
    run = make_run(make_import(alice, SOURCE), status)

    response = client_for(alice).post(f"{API}/runs/{run.pk}/cancel")

    assert response.status_code == 409
    assert response.json()["detail"] == (
        f"run {run.pk} is {status}: only a queued, running or retrying run can be cancelled"
    )


def test_cancelling_an_import_ends_its_retrying_run_too(alice, csv_server):
    # Given an import whose run failed once and waits to retry
    imp = make_import(alice, csv_server.serve("/p.csv", PRODUCTS_CSV))
    run = make_run(imp, "retrying", attempts=1)

    # When alice cancels the import
    assert client_for(alice).post(f"{API}/imports/{imp.pk}/cancel").status_code == 200

    # Then the retry never comes: the run is cancelled and its message does nothing
    run.refresh_from_db()
    assert (run.status, run.error_message) == ("cancelled", "cancelled with its import")
    assert runner.execute(run.pk)["status"] == "cancelled"
    assert csv_server.hits == {}


def test_a_run_asked_to_stop_whose_worker_died_is_cancelled_by_the_sweep_not_retried(alice):
    # Given a running run asked to stop, whose worker then died (its heartbeat stopped)
    imp = make_import(alice, SOURCE)
    stale = timezone.now() - timedelta(minutes=10)
    run = make_run(imp, "running", attempts=1, heartbeat_at=stale, attempt_started_at=stale)
    services.cancel_run(run, user=alice)

    # When the maintenance sweep finds it
    services.recover_lost_run(run.pk, stale_before=timezone.now() - timedelta(minutes=1))

    # Then it is cancelled, with no other attempt
    run.refresh_from_db()
    assert (run.status, run.attempts) == ("cancelled", 1)


@pytest.mark.parametrize("how", ["import cancelled", "owner deactivated", "run cancelled"])
def test_a_retrying_run_cancelled_any_way_says_how_long_it_ran(alice, how):
    # Cancelled with its import, or by its owner's deactivation, a retrying run had no
    # duration ("Duration: -" between its start and its end), and 1.6 s cancelled alone; a
    # queued one 0 one way and none the other (outcomes hunt).
    imp = make_import(alice, SOURCE)
    started = timezone.now() - timedelta(seconds=90)
    retrying = make_run(imp, "retrying", started_at=started, attempts=1)
    queued = make_run(make_import(alice, SOURCE, name="other", dataset="other"), "queued")
    client = client_for(alice)

    if how == "import cancelled":
        client.post(f"{API}/imports/{imp.pk}/cancel")
        client.post(f"{API}/imports/{queued.scheduled_import_id}/cancel")
    elif how == "owner deactivated":
        alice.is_active = False
        alice.save()
    else:
        client.post(f"{API}/runs/{retrying.pk}/cancel")
        client.post(f"{API}/runs/{queued.pk}/cancel")

    retrying.refresh_from_db()
    queued.refresh_from_db()
    assert (retrying.status, queued.status) == ("cancelled", "cancelled")
    assert 89_000 <= retrying.duration_ms <= 120_000
    assert queued.duration_ms == 0
