"""The database goes away in the middle of a run and stays away a few seconds (its
connections ended and new ones refused: `ALLOW_CONNECTIONS false` on this test's database, as
a restart or a failover looks to a worker). The run must say that it lost its database, not
that its worker was lost; and an import allowing no retries must not be failed as "the worker
was lost during each of its 1 attempts".

Regression (database hunt): the attempt's check whether it was cancelled asked the database
once, failed, and handed the message back with the run `running`; its redelivery said "the
worker running this attempt was lost", and with no retries allowed failed the run "the worker
was lost during each of its 1 attempts"."""

import time

import pytest

from schedules import services
from schedules.models import ImportRun
from tests.conftest import wait_for
from tests.factories import make_import
from tests.reliability import FAST, big_csv, refuse_connections, wait_for_download

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]


@pytest.mark.parametrize("max_retries", [0, 3])
def test_a_run_whose_database_goes_away_for_a_while_says_it_lost_its_database(
    alice, csv_server, processes, outage, max_retries
):
    url = csv_server.serve("/big.csv", big_csv(20_000), chunk_delay=0.4)
    imp = make_import(
        alice, url, max_retries=max_retries, retry_backoff_seconds=1, retry_backoff_max_seconds=1
    )
    processes.start("worker", **FAST)
    run = services.enqueue_run(imp, trigger="manual", user=alice)
    wait_for_download(csv_server, run, processes.logs())
    time.sleep(1)

    # When the database goes away for 8 s
    outage()
    time.sleep(8)
    refuse_connections(True)

    run = wait_for(
        lambda: ImportRun.objects.filter(pk=run.pk, finished_at__isnull=False).first(),
        90, what="the run to end\n" + processes.logs(),
    )  # fmt: skip
    errors = [a["error"] for a in run.error_details.get("attempts", [])]
    print(f"\nended: {run.status} attempts={run.attempts} error={run.error_message!r}\n"
          f"attempt errors={errors}")  # fmt: skip
    print(processes.log_of("worker"))
    said = " ".join([run.error_message, *errors])
    assert "worker" not in said, said
    assert "database" in said, said
