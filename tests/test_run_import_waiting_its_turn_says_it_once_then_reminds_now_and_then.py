"""`manage.py run_import` of an `overlap: queue` import waiting behind a run in progress says
once that it waits (its log line and its words), again only when it waits for another run, and
meanwhile reminds now and then that it still waits.

Regression (words5 hunt): the runner's line "run not started run=N: it waits for run M" was
logged at each look at the lease, every 10 s (every second with a 3 s lease): a wait of an
import's whole timeout, an hour by default, filled the terminal with some 360 of them.
"""

from __future__ import annotations

import io
import logging
import threading
import time

import pytest
from django.core.management import call_command
from django.db import connection

from schedules.models import ImportRun
from tasks import locks
from tasks.management.commands import run_import
from tests.api_support import make_run
from tests.factories import PRODUCTS_CSV, make_import

# Committed: the runs in progress end from another thread, as their workers would.
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def quick_looks(settings, monkeypatch):
    """The run looks at the lease every second, and is reminded of every 2 s."""
    settings.RUN_LEASE_SECONDS = 3
    monkeypatch.setattr(run_import, "WAIT_REMINDER_SECONDS", 2)


def held_by_run_in_progress(imp) -> tuple[ImportRun, locks.Lease]:
    busy = make_run(imp, "running", attempts=1)
    lease = locks.run_lease(imp.pk, busy.pk)
    assert lease.acquire()
    return busy, lease


def then_another(imp, first: ImportRun, lease: locks.Lease, after: float) -> dict:
    """Ends `first` after `after` seconds, a second run of the import in progress in its place
    (the lease kept held), ended as long after; the second run in what it returns."""
    second: dict = {}

    def relay() -> None:
        try:
            time.sleep(after)
            ImportRun.objects.filter(pk=first.pk).update(status="succeeded")
            second["run"] = make_run(imp, "running", attempts=1)
            time.sleep(after)
            ImportRun.objects.filter(pk=second["run"].pk).update(status="succeeded")
        finally:
            lease.release()
            connection.close()

    second["thread"] = threading.Thread(target=relay)
    second["thread"].start()
    return second


def test_it_says_each_wait_once_and_reminds_meanwhile(quick_looks, alice, csv_server, caplog):
    # Given an overlap: queue import whose run in progress ends in 4 s, another run of it then
    # in progress 4 s more
    imp = make_import(alice, csv_server.serve("/p.csv", PRODUCTS_CSV), overlap="queue")
    first, lease = held_by_run_in_progress(imp)
    second = then_another(imp, first, lease, after=4)
    err = io.StringIO()

    # When the operator runs it in the foreground, some eight looks at the lease
    with caplog.at_level(logging.INFO, logger="importbeat.runs"):
        call_command("run_import", imp.pk, "--no-progress", stdout=io.StringIO(), stderr=err)
    second["thread"].join()

    # Then it ran once the others ended
    run = ImportRun.objects.exclude(pk__in=[first.pk, second["run"].pk]).get(scheduled_import=imp)
    assert (run.status, run.rows_inserted) == ("succeeded", 3)
    # ... its log said once that it waited for each of them
    waits = [r.getMessage() for r in caplog.records if r.getMessage().startswith("run not start")]
    assert waits == [
        f"run not started run={run.pk}: it waits for run {first.pk}",
        f"run not started run={run.pk}: it waits for run {second['run'].pk}",
    ], waits
    # ... and so did its words
    said = err.getvalue().splitlines()
    assert [line for line in said if " is waiting its turn: " in line] == [
        f"run {run.pk} is waiting its turn: run {first.pk} of this import is in progress "
        f"(overlap: queue; skipped if it still waits {imp.timeout_seconds}s after it was queued)",
        f"run {run.pk} is waiting its turn: run {second['run'].pk} of this import is in progress "
        f"(overlap: queue; skipped if it still waits {imp.timeout_seconds}s after it was queued)",
    ], said
    # ... reminding meanwhile that it still waited, not at each look
    reminders = [line for line in said if " still waits its turn " in line]
    assert 1 <= len(reminders) <= 4, said
    assert reminders[0].startswith(f"run {run.pk} still waits its turn (")
    assert reminders[0].endswith(" s so far)")
