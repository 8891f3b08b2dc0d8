"""A run that takes longer than its import's timeout_seconds is stopped and ends `timed_out`."""

import pytest

from schedules import services
from schedules.models import ImportRun, ScheduledImport
from tests.conftest import wait_for
from tests.factories import make_import
from tests.reliability import FAST, big_csv

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]


def test_a_run_over_its_timeout_ends_timed_out_and_counts_as_a_failure(
    alice, csv_server, processes
):
    # Given an import with a 2 s timeout and a file that takes ~6 s to download
    url = csv_server.serve("/slow.csv", big_csv(20_000), chunk_delay=0.8)
    imp = make_import(alice, url, timeout_seconds=2)
    processes.start("worker", **FAST)

    run = services.enqueue_run(imp, trigger="manual", user=alice)

    run = wait_for(
        lambda: ImportRun.objects.filter(pk=run.pk, status__in=ImportRun.FINAL_STATUSES).first(),
        30,
        what="the run to end\n" + processes.logs(),
    )
    print(f"\n[figures] time limit: status={run.status} duration_ms={run.duration_ms}")
    assert run.status == "timed_out"
    assert "exceeded its 2s time limit" in run.error_message
    # The limit counts from the task's start, a moment before the run's started_at.
    assert 1500 <= run.duration_ms < 10_000
    imp = ScheduledImport.objects.get(pk=imp.pk)
    assert (imp.failed_runs, imp.consecutive_failures) == (1, 1)
