"""Redis killed and restarted (empty: no persistence) while a run is importing: the run carries
on, re-takes its lease, ends correctly, and the worker serves the next run on the new Redis."""

import time

import pytest

from project.celery import app
from project.devservices import free_port
from schedules import services
from schedules.models import ImportRun
from tasks.tasks import execute_run
from tests.conftest import wait_for
from tests.factories import make_import
from tests.reliability import FAST, big_csv, figures, redis_server, wait_for_download

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]

ROWS = 20_000


def send(run: ImportRun, broker_url: str) -> None:
    """Queue the run on this test's own Redis (the suite's app publishes to the suite's)."""
    with app.connection_for_write(broker_url) as conn:
        execute_run.apply_async(args=[run.pk], task_id=run.celery_task_id, connection=conn)


def enqueue(imp, alice) -> ImportRun:
    from unittest import mock

    with mock.patch("schedules.services.send_run"):
        return services.enqueue_run(imp, trigger="manual", user=alice)


def test_a_run_survives_a_redis_restart_and_the_worker_serves_the_next_run(
    alice, csv_server, processes, tmp_path
):
    url = csv_server.serve("/big.csv", big_csv(ROWS), chunk_delay=0.6)
    imp = make_import(alice, url)
    with redis_server(free_port(), tmp_path) as server:
        env = {**FAST, "REDIS_URL": server.url, "CELERY_BROKER_URL": server.url}
        processes.start("worker", **env)
        run = enqueue(imp, alice)
        send(run, server.url)
        wait_for_download(csv_server, run, processes.logs())

        # When Redis dies mid-import and comes back empty three seconds later
        time.sleep(1)
        server.kill()
        time.sleep(3)
        server.start()

        # Then the run ends correctly, once
        run = wait_for(
            lambda: ImportRun.objects.filter(pk=run.pk).exclude(status="running").first(),
            60,
            what="the run to end\n" + processes.logs(),
        )
        # ... and the worker, reconnected, runs the next one
        second = enqueue(imp, alice)
        send(second, server.url)
        second = wait_for(
            lambda: ImportRun.objects.filter(pk=second.pk, status="succeeded").first(),
            60,
            what="a run after the restart\n" + processes.logs(),
        )
        result = figures(
            "Redis restarted mid-run",
            imp,
            ROWS,
            status=run.status,
            attempts=run.attempts,
            second_run=second.status,
            second_unchanged=second.rows_unchanged,
        )
    assert run.status == "succeeded", run.error_message
    assert run.attempts == 1
    assert result["runs"] == 2
    assert (result["records"], result["lost_rows"], result["wrong_rows"]) == (ROWS, 0, 0)
    assert second.rows_unchanged == ROWS
