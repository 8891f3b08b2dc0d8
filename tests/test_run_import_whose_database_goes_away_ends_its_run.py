"""`manage.py run_import` (a run in the foreground) while the database goes away
for a few seconds mid-download (`ALLOW_CONNECTIONS false` on this test's database). The run
must end, failed in words ("lost its connection …; a run started in the foreground is not
retried"), and the command say so without a traceback: not leave the run `running` for the
sweep to take for a lost worker's and send to a worker.

Regression (database hunt): the command exited at once, the run left `running` (every trigger
answered 409), and two lease periods later the sweep sent it to a worker as a lost worker's."""

import subprocess
import sys
import time

import pytest

from schedules.models import ImportRun
from tests.conftest import BASE_DIR, Processes, wait_for
from tests.factories import make_import
from tests.reliability import big_csv, refuse_connections

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]


def test_run_import_whose_database_goes_away_ends_its_run_in_words(
    alice, csv_server, tmp_path, outage
):
    url = csv_server.serve("/big.csv", big_csv(20_000), chunk_delay=0.4)
    imp = make_import(alice, url)
    env = Processes(tmp_path).env()
    command = subprocess.Popen(
        [sys.executable, "manage.py", "run_import", str(imp.pk), "--no-progress"],
        cwd=BASE_DIR, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wait_for(lambda: csv_server.hits.get("/big.csv"), 30, what="the download")
        time.sleep(1.5)
        outage()
        time.sleep(5)
        refuse_connections(True)
        _, err = command.communicate(timeout=60)
    finally:
        if command.poll() is None:
            command.kill()
    run = ImportRun.objects.get(scheduled_import=imp)
    print(f"\nexit={command.returncode} run={run.status} error={run.error_message!r}")
    print("stderr:", err[-2500:])
    assert run.status in ImportRun.FINAL_STATUSES, f"run left {run.status}"
    assert "Traceback" not in err
