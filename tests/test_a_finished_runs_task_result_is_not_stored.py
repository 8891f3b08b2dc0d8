"""A worker stores no result for a finished run's task: nothing reads it (Flower has it from
the task-succeeded event, the API from the run row), and the write cost every small run a
Redis round trip (issue 15). A failed run's task still ends FAILURE, and a retry's RETRY
state still replaces the PROGRESS its failed attempt left (the API's live progress reads the
task state while a run runs)."""

import uuid

import pytest
from celery.result import AsyncResult
from django.utils import timezone

from schedules import dispatch, services
from schedules.models import ImportRun
from tests.conftest import Route, wait_for
from tests.factories import PRODUCTS_CSV, make_import
from tests.reliability import wait_for_the_end

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]


def test_a_succeeded_run_leaves_no_task_result_and_a_failed_one_its_failure(
    alice, csv_server, processes
):
    # Given a worker, an import that lands and one whose file is gone
    processes.start("worker")
    good = make_import(alice, csv_server.serve("/p.csv", PRODUCTS_CSV), name="good")
    gone = make_import(alice, csv_server.base_url + "/gone.csv", name="gone", dataset="gone")
    csv_server.routes["/gone.csv"] = Route(b"not here", status=404)

    # When both run
    runs = [services.enqueue_run(imp, trigger="api", user=alice) for imp in (good, gone)]
    landed, failed = (wait_for_the_end(run, processes) for run in runs)

    # Then the failed run's task is FAILURE (stored once its run row is finished), and the
    # succeeded run's has no stored state
    assert (landed.status, failed.status) == ("succeeded", "failed")
    wait_for(lambda: AsyncResult(failed.celery_task_id).state == "FAILURE", 30, what="FAILURE")
    assert AsyncResult(landed.celery_task_id).state == "PENDING"


def test_a_scheduled_runs_task_leaves_no_result_either(alice, csv_server, processes):
    # Beat's runs go out through the pipelined sender (services.send_runs). Its messages said
    # `ignore_result: False`, which a worker takes over the task's own setting: every scheduled
    # run stored a result nobody reads, a Redis write and a day of memory per run.
    processes.start("worker")
    imp = make_import(alice, csv_server.serve("/p.csv", PRODUCTS_CSV))
    run = ImportRun.objects.create(
        scheduled_import=imp, trigger="schedule", scheduled_for=timezone.now(),
        celery_task_id=str(uuid.uuid4()),
    )  # fmt: skip

    dispatch.publish_runs([run])
    landed = wait_for_the_end(run, processes)

    assert landed.status == "succeeded"
    assert AsyncResult(landed.celery_task_id).state == "PENDING"
