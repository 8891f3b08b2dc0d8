"""A run its owner asked to cancel, whose pool process then dies before the next safe point (a
file that kills workers is what an owner cancels), ends `cancelled` when its message comes
back, as the sweep ends one whose whole worker died: it ended `failed`, counted in the failure
streak, when out of attempts, and with attempts left fetched its file again first."""

from __future__ import annotations

import signal
import time

import pytest

from schedules import services
from schedules.models import ImportRun, ScheduledImport
from tests.conftest import wait_for
from tests.factories import make_import
from tests.reliability import FAST, big_csv, pool_children, wait_for_download

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]


@pytest.mark.parametrize("max_retries", [0, 3])
def test_a_cancelled_run_whose_pool_process_dies_ends_cancelled(
    alice, csv_server, processes, max_retries
):
    # Given a run of alice's downloading a slow file
    worker = processes.start("worker", **FAST)
    wait_for(lambda: pool_children(worker), 30, what="pool")
    url = csv_server.serve("/big.csv", big_csv(20_000), chunk_delay=0.5)
    imp = make_import(alice, url, retry_backoff_seconds=1, max_retries=max_retries)
    run = services.enqueue_run(imp, trigger="manual", user=alice)
    wait_for_download(csv_server, run, processes.logs())
    time.sleep(1.0)

    # When she cancels it, and its pool process dies before the next safe point
    services.cancel_run(ImportRun.objects.get(pk=run.pk), alice)
    for child in pool_children(worker):
        child.send_signal(signal.SIGKILL)

    # Then it ends cancelled, in her words, without another attempt or download
    ended = wait_for(
        lambda: ImportRun.objects.filter(pk=run.pk, finished_at__isnull=False).first(),
        60,
        what="the run to end\n" + processes.logs(),
    )
    imp = ScheduledImport.objects.get(pk=imp.pk)
    assert (ended.status, ended.attempts) == ("cancelled", 1), ended.error_message
    assert ended.error_message == "cancelled by alice while running; the dataset was not changed"
    assert (imp.failed_runs, imp.consecutive_failures) == (0, 0)
    assert csv_server.hits["/big.csv"] == 1
