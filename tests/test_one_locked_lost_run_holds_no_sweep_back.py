"""One dead run's row is held locked by another session (an operator's open transaction
looking at the stuck run; a statement of its own dead attempt). The sweep passes it over for
its next pass, and goes on.

Regression (database hunt): the sweep took `select_for_update()` of each lost run
(schedules.services.recover_lost_run) with the worker session's unbounded lock wait
(lock_timeout 0, project/worker_connections.py): each sweep waited on that one row until its
own soft time limit (120 s), and the next one, sent every MAINTENANCE_INTERVAL_SECONDS, did the
same. Meanwhile each waiting sweep held a worker slot: here (2 slots) no run of anyone ran; the
dead runs after it, the lost notifications and the owners' lines the sweep looks after were not
looked at."""

import time
from datetime import timedelta

import pytest

from common import database_clock
from schedules import services
from schedules.models import ImportRun
from tests.conftest import wait_for
from tests.factories import PRODUCTS_CSV, make_import
from tests.reliability import FAST, other_connection

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]


def dead_run(imp) -> ImportRun:
    long_ago = database_clock.now() - timedelta(hours=1)
    return ImportRun.objects.create(
        scheduled_import=imp, trigger="manual", status="running", attempts=1,
        started_at=long_ago, attempt_started_at=long_ago, heartbeat_at=long_ago,
        worker="gone@host", celery_task_id="lost-task",
    )  # fmt: skip


def test_one_locked_dead_run_does_not_stop_the_sweep_nor_the_workers(
    alice, bob, csv_server, processes
):
    url = csv_server.serve("/p.csv", PRODUCTS_CSV)
    held = dead_run(make_import(alice, url, max_retries=0))
    bobs = make_import(bob, url, max_retries=0)
    with other_connection() as locker:
        locker.execute("SELECT 1 FROM schedules_importrun WHERE id = %s FOR UPDATE", [held.pk])
        processes.start("worker", **{**FAST, "WORKER_CONCURRENCY": "2"})
        processes.start("beat", **FAST)
        wait_for(
            lambda: processes.log_of("worker").count("sweep_runs[") >= 2, 30, what="two sweeps"
        )
        time.sleep(2)
        # When bob triggers a run
        run = services.enqueue_run(bobs, trigger="manual", user=bob)
        try:
            # Then it runs
            wait_for(
                lambda: ImportRun.objects.filter(pk=run.pk, finished_at__isnull=False).first(),
                30, what="bob's run to end while a sweep waits on alice's dead run's lock",
            )  # fmt: skip
        finally:
            run = ImportRun.objects.get(pk=run.pk)
            print(f"\nbob's run: {run.status}")
            log = processes.log_of("worker")
            print("\n".join(line for line in log.splitlines() if "] received" in line or
                            "succeeded in" in line)[-2000:])  # fmt: skip
            locker.rollback()
