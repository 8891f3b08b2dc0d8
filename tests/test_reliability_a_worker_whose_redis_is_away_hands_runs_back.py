"""A worker whose Redis of run locks (REDIS_URL) is away while its broker is not: a broker of
its own (RabbitMQ, or a second Redis), or REDIS_URL pointed at the wrong place.

Before, the run's lease could not be taken, the task failed and its message was acknowledged:
the run stayed `queued` with no message behind it until reconciliation sent it again after
STALE_QUEUED_SECONDS (30 minutes), to meet the same end while Redis was away, and Flower listed
a failed task for a run that had not started. Now the message goes back to the queue, as it does
for a worker without its database, and the run starts as soon as Redis answers again. And a
worker does not start without it, as without its database or its broker.
"""

import time

import pytest
from django.conf import settings

from project.devservices import free_port
from schedules import services
from schedules.models import ImportRun
from tests.conftest import wait_for
from tests.factories import PRODUCTS_CSV, make_import
from tests.reliability import FAST, RedisServer
from tests.test_worker_not_started_without_its_database_or_broker import refusal

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]


def test_a_run_waits_on_the_queue_while_the_run_locks_redis_is_away_and_runs_once_it_is_back(
    alice, csv_server, processes, tmp_path
):
    imp = make_import(alice, csv_server.serve("/p.csv", PRODUCTS_CSV))
    locks = RedisServer(free_port(), tmp_path)
    locks.start()
    try:
        # Given a worker whose broker answers, and whose REDIS_URL stops answering
        processes.start(
            "worker", **FAST, REDIS_URL=locks.url, CELERY_RESULT_BACKEND=settings.REDIS_URL
        )
        wait_for(lambda: "ready." in processes.logs(), 60, what="worker\n" + processes.logs())
        locks.kill()

        # When a run is queued
        run = services.enqueue_run(imp, trigger="manual", user=alice)

        # Then it is handed back, not dropped: it waits, queued, and the log says why
        wait_for(
            lambda: "goes back to the queue" in processes.logs(), 60,
            what="a hand-back\n" + processes.logs(),
        )  # fmt: skip
        time.sleep(1)
        run.refresh_from_db()
        assert run.status == "queued"
        assert run.attempts == 0

        # And once Redis answers, the run starts and ends, once
        locks.start()
        wait_for(
            lambda: ImportRun.objects.filter(pk=run.pk, status="succeeded").exists(),
            60,
            what="the run to succeed\n" + processes.logs(),
        )
    finally:
        locks.kill()
    run.refresh_from_db()
    assert run.attempts == 1
    assert run.rows_inserted == 3


def test_a_worker_does_not_start_without_the_redis_of_its_run_locks(processes, refused_port):
    port = refused_port

    worker = processes.start("worker", REDIS_URL=f"redis://127.0.0.1:{port}/0")

    assert refusal(processes, worker) == (
        f"importbeat worker not started: cannot reach Redis at 127.0.0.1:{port}: connection refused"
    )
