"""SIGTERM to a worker (docker stop, a deploy) is a warm shutdown: the running import finishes
before the worker exits, and no new one is started."""

import os
import signal

import pytest

from schedules import services
from schedules.models import ImportRun
from tests.factories import make_import
from tests.reliability import FAST, big_csv, figures, wait_for_download

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]

ROWS = 20_000


def test_a_warm_shutdown_lets_the_running_import_finish(alice, csv_server, processes):
    url = csv_server.serve("/big.csv", big_csv(ROWS), chunk_delay=0.5)
    imp = make_import(alice, url)
    worker = processes.start("worker", **FAST)
    run = services.enqueue_run(imp, trigger="manual", user=alice)
    wait_for_download(csv_server, run, processes.logs())

    # When the worker's main process gets SIGTERM mid-import (what docker stop sends)
    os.kill(worker.pid, signal.SIGTERM)

    # Then it waits for the import and exits cleanly
    exit_code = worker.wait(60)
    run = ImportRun.objects.get(pk=run.pk)
    result = figures(
        "warm shutdown", imp, ROWS, status=run.status, attempts=run.attempts, exit_code=exit_code
    )
    assert exit_code == 0
    assert (run.status, run.attempts) == ("succeeded", 1)
    assert (result["records"], result["lost_rows"], result["wrong_rows"]) == (ROWS, 0, 0)
