"""A worker whose Redis of run locks (REDIS_URL) is away while its broker is not: a broker of
its own (RabbitMQ, or a second Redis), or REDIS_URL pointed at the wrong place.

Before, the run's lease could not be taken, the task failed and its message was acknowledged:
the run stayed `queued` with no message behind it until reconciliation sent it again after
STALE_QUEUED_SECONDS (30 minutes), to meet the same end while Redis was away, and Flower listed
a failed task for a run that had not started. Now the message goes back to the queue, as it does
for a worker without its database, and the run starts as soon as Redis answers again.
"""

import time

import pytest
from django.conf import settings

from project.devservices import free_port
from schedules import services
from schedules.models import ImportRun
from tests.conftest import wait_for
from tests.factories import PRODUCTS_CSV, make_import
from tests.reliability import FAST, redis_server

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]


def test_a_run_waits_on_the_queue_while_the_run_locks_redis_is_away_and_runs_once_it_is_back(
    alice, csv_server, processes, tmp_path
):
    imp = make_import(alice, csv_server.serve("/p.csv", PRODUCTS_CSV))
    locks_port = free_port()
    # Given a worker whose broker answers and whose REDIS_URL does not
    processes.start(
        "worker", **FAST, REDIS_URL=f"redis://127.0.0.1:{locks_port}/0",
        CELERY_RESULT_BACKEND=settings.REDIS_URL,
    )  # fmt: skip

    # When a run is queued
    run = services.enqueue_run(imp, trigger="manual", user=alice)

    # Then it is handed back, not dropped: it waits, queued, and the log says why
    wait_for(
        lambda: "goes back to the queue" in processes.logs(),
        60,
        what="a hand-back\n" + processes.logs(),
    )
    time.sleep(1)
    run.refresh_from_db()
    assert run.status == "queued"
    assert run.attempts == 0

    # And once Redis answers, the run starts and ends, once
    with redis_server(locks_port, tmp_path):
        wait_for(
            lambda: ImportRun.objects.filter(pk=run.pk, status="succeeded").exists(),
            60,
            what="the run to succeed\n" + processes.logs(),
        )
    run.refresh_from_db()
    assert run.attempts == 1
    assert run.rows_inserted == 3
