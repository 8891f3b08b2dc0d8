"""A queued run cancelled while its worker finds another run of its import holding the lease
ends its task saying `cancelled`, as the run log does (endings hunt): the worker's skip found
the run no longer queued and wrote nothing, and its task said `skipped` all the same (Flower's
result), of a run the API, the admin and the log called cancelled. It ends as a run cancelled a
moment earlier does, REVOKED in Flower (review2)."""

import pytest

from schedules import services
from schedules.models import ImportRun
from tasks import locks, runner
from tests.factories import PRODUCTS_CSV, make_import

pytestmark = pytest.mark.django_db(transaction=True)


def worker_task(task_id: str):
    request = type("request", (), {"hostname": "w", "id": task_id})
    return type("task", (), {"request": request})()


def test_a_run_cancelled_as_it_would_be_skipped_says_cancelled(
    alice, csv_server, settings, monkeypatch
):
    # Given alice's import (overlap: skip) whose run 1 runs, holding the lease, and its next run
    settings.RUN_LEASE_SECONDS = 60
    imp = make_import(alice, csv_server.serve("/p.csv", PRODUCTS_CSV))
    holder = ImportRun.objects.create(scheduled_import=imp, trigger="manual", status="running")
    assert locks.run_lease(imp.pk, holder.pk).acquire()
    run = ImportRun.objects.create(scheduled_import=imp, trigger="schedule", celery_task_id="t-2")
    # ... which alice cancels as the worker that took it is about to skip it
    skip_run = services.skip_run

    def cancelled_first(run, reason):
        services.cancel_run(ImportRun.objects.get(pk=run.pk), alice)
        return skip_run(run, reason)

    monkeypatch.setattr(services, "skip_run", cancelled_first)

    # When the worker handles its message
    with pytest.raises(runner.StoppedBeforeDelivery) as stopped:
        runner.execute(run.pk, worker_task("t-2"))

    # Then the run and its task both say cancelled: the task stops as one cancelled before its
    # message came (REVOKED in Flower: tasks.tasks.execute_run), saying how the run ended
    assert ImportRun.objects.get(pk=run.pk).status == "cancelled"
    result = stopped.value.summary
    assert (result["status"], result["error"]) == ("cancelled", "cancelled by alice")
