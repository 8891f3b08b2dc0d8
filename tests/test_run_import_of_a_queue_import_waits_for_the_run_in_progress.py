"""`run_import` of an `overlap: queue` import waits for the run in progress, as a worker's run
does: it was skipped at once ("skipped: run 5 of this import was in progress"), the operator's
run lost where the import's policy says it waits. It says once that it waits, runs when the
other ends, and is skipped after the import's timeout as a worker's is."""

import io
import threading
import time

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from schedules import services
from schedules.models import ImportRun, ScheduledImport
from tasks import locks
from tests.api_support import make_run
from tests.factories import PRODUCTS_CSV, make_import

# Committed: the run in progress ends from another thread, as its worker would.
pytestmark = pytest.mark.django_db(transaction=True)


def run_in_progress(imp) -> tuple[ImportRun, locks.Lease]:
    busy = make_run(imp, "running", attempts=1)
    lease = locks.run_lease(imp.pk, busy.pk)
    assert lease.acquire()
    return busy, lease


def ended_after(seconds: float, busy: ImportRun, lease: locks.Lease) -> threading.Thread:
    def end() -> None:
        time.sleep(seconds)
        ImportRun.objects.filter(pk=busy.pk).update(status="succeeded")
        lease.release()
        connection.close()

    thread = threading.Thread(target=end)
    thread.start()
    return thread


def test_it_waits_for_the_run_in_progress_then_runs(alice, csv_server):
    # Given an overlap: queue import whose run is in progress, ending in 2 seconds
    imp = make_import(alice, csv_server.serve("/p.csv", PRODUCTS_CSV), overlap="queue")
    busy, lease = run_in_progress(imp)
    ender = ended_after(2, busy, lease)
    err = io.StringIO()

    # When the operator runs it in the foreground
    started = time.monotonic()
    call_command("run_import", imp.pk, stdout=io.StringIO(), stderr=err)
    ender.join()

    # Then it ran once the other ended, saying once that it waited and for whom
    run = ImportRun.objects.exclude(pk=busy.pk).get(scheduled_import=imp)
    assert (run.status, run.rows_inserted) == ("succeeded", 3)
    assert time.monotonic() - started >= 2
    said = err.getvalue()
    assert said.count(f"run {run.pk} is waiting its turn: run {busy.pk} of this import") == 1, said


def test_it_is_skipped_after_the_imports_timeout_as_a_workers_run_is(alice, csv_server):
    # Given an overlap: queue import with a 2-second timeout, whose run in progress goes on
    imp = make_import(
        alice, csv_server.serve("/p.csv", PRODUCTS_CSV), overlap="queue", timeout_seconds=2
    )
    busy, _lease = run_in_progress(imp)

    # When the operator runs it in the foreground, it is skipped once its timeout has passed
    with pytest.raises(CommandError) as raised:
        call_command("run_import", imp.pk, stdout=io.StringIO(), stderr=io.StringIO())

    run = ImportRun.objects.exclude(pk=busy.pk).get(scheduled_import=imp)
    assert run.status == "skipped"
    assert "waited" in str(raised.value) and f"for run {busy.pk} of this import" in str(
        raised.value
    )
    assert "longer than its 2s timeout" in str(raised.value)


def deleted_once_it_waits(imp, busy: ImportRun, *, with_its_import: bool) -> threading.Thread:
    """Deletes the foreground run once it waits its turn (alone, as the README's way to stop a
    queued run, or with its import)."""

    def delete() -> None:
        try:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                waiting = ImportRun.objects.filter(
                    scheduled_import=imp,
                    status="queued",
                    error_message__startswith=services.WAITING_ITS_TURN,
                ).exclude(pk=busy.pk)
                if waiting.exists():
                    if with_its_import:
                        services.delete_import(imp)
                    else:
                        services.delete_runs(waiting)
                    return
                time.sleep(0.1)
        finally:
            connection.close()

    thread = threading.Thread(target=delete)
    thread.start()
    return thread


@pytest.mark.parametrize(
    ("with_its_import", "words"),
    [
        (False, "it was deleted while it waited its turn; it did not run"),
        (True, "its import was deleted while it waited its turn; it did not run"),
    ],
)
def test_a_run_deleted_while_it_waits_says_what_was_deleted_and_that_it_never_ran(
    alice, csv_server, with_its_import, words
):
    # Regression (review1): it said "its import was deleted while it ran" of a run deleted
    # alone while it waited, its import there, the run never run
    # Given an overlap: queue import whose run is in progress
    imp = make_import(alice, csv_server.serve("/p.csv", PRODUCTS_CSV), overlap="queue")
    busy, lease = run_in_progress(imp)
    deleter = deleted_once_it_waits(imp, busy, with_its_import=with_its_import)

    # When the operator runs it in the foreground, and its waiting run is deleted
    try:
        with pytest.raises(CommandError) as raised:
            call_command("run_import", imp.pk, stdout=io.StringIO(), stderr=io.StringIO())
    finally:
        deleter.join()
        lease.release()

    # Then the command says what was deleted, and that the run never ran
    assert ScheduledImport.objects.filter(pk=imp.pk).exists() is not with_its_import
    assert str(raised.value).endswith(f" cancelled: {words}"), str(raised.value)


def test_an_overlap_skip_import_is_still_skipped_at_once(alice, csv_server):
    imp = make_import(alice, csv_server.serve("/p.csv", PRODUCTS_CSV))
    busy, _lease = run_in_progress(imp)

    with pytest.raises(CommandError, match=f"skipped: run {busy.pk} of this import was in"):
        call_command("run_import", imp.pk, stdout=io.StringIO(), stderr=io.StringIO())
