"""End to end with real processes: beat (Procfile) dispatches onto Redis, a worker (Procfile)
runs the import, the run is logged and the rows land."""

import time

import pytest
from django_celery_beat.models import PeriodicTask

from schedules import services
from schedules.models import ImportRun, Record
from tests.conftest import wait_for
from tests.factories import PRODUCTS_CSV, make_import

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]


def scheduled_runs(imp):
    return list(ImportRun.objects.filter(scheduled_import=imp, trigger="schedule"))


def test_beat_and_a_worker_run_an_interval_import_and_log_it(alice, csv_server, processes):
    imp = make_import(alice, csv_server.serve("/p.csv", PRODUCTS_CSV), interval_seconds=2)
    processes.start("worker")
    processes.start("beat")

    # The first run that succeeded: a worker slow to start finds two ticks queued and runs both
    # within a few milliseconds, and the newest (the runs' default order) is the re-load that
    # inserted nothing (seen in CI at 19:08 UTC on 2026-12-03).
    run = wait_for(
        lambda: (
            ImportRun.objects.filter(scheduled_import=imp, status="succeeded")
            .order_by("queued_at", "id")
            .first()
        ),
        timeout=60,
        what="a succeeded scheduled run\n" + processes.logs(),
    )

    assert run.trigger == "schedule" and run.scheduled_for is not None
    assert (run.rows_read, run.rows_inserted, run.rows_failed) == (3, 3, 0)
    assert run.celery_task_id and run.worker
    assert set(Record.objects.filter(dataset=imp.dataset).values_list("key", flat=True)) == {
        "A-1", "B-2", "C-3",
    }  # fmt: skip
    ticks = [r.scheduled_for for r in scheduled_runs(imp)]
    assert len(ticks) == len(set(ticks))


def test_pausing_stops_runs_and_a_new_schedule_starts_them(alice, csv_server, processes):
    # Given an import whose cron schedule will not fire during the test
    imp = make_import(
        alice,
        csv_server.serve("/p.csv", PRODUCTS_CSV),
        schedule_type="cron",
        cron_expression="0 0 1 1 *",
        interval_seconds=None,
    )
    processes.start("worker")
    processes.start("beat")

    # When it is re-scheduled to every 2 seconds, runs start
    services.update_import(imp, schedule_type="interval", interval_seconds=2, cron_expression="")
    wait_for(lambda: len(scheduled_runs(imp)) >= 2, 60, what="runs after re-scheduling")

    # When it is paused, no new run is dispatched
    services.pause_import(imp)
    time.sleep(2)  # a tick beat sent just before the pause may still land
    count_after_pause = len(scheduled_runs(imp))
    time.sleep(6)  # three intervals
    assert len(scheduled_runs(imp)) == count_after_pause

    # When it is deleted, its beat entry goes with it
    task_id = imp.periodic_task_id
    services.delete_import(imp)
    assert not PeriodicTask.objects.filter(pk=task_id).exists()
