"""A cancel stores no task state for a waiting run whose worker has stored none yet: the state
it ends is the one stored, and the worker that stores the wait stores its end after it.

Regression: the cancel stored REVOKED for every task its waiting runs' workers were noted for,
stored or not (schedules.revoked_tasks.stored_revoked): a key written for a task with no state,
which the worker's RETRY then replaced anyway (put right by the worker announcing the retry,
tasks.lost_tasks.end_retried_task).

In process: the run's message is handled by Celery's tracer, with the real Redis result backend;
the owner cancels after the worker noted it parked the run and before its RETRY is stored.
"""

import pytest
from celery import current_app
from celery.result import AsyncResult

from schedules import services
from schedules.models import ImportRun
from tasks import lost_tasks, runner
from tasks.tasks import execute_run
from tests.factories import PRODUCTS_CSV
from tests.task_states_support import second_run_of_an_owner_at_her_cap

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_run_cancelled_as_its_worker_parks_it_gets_no_task_state_at_the_cancel(
    alice, csv_server, settings, monkeypatch
):
    # Given alice at her cap of 1, and a second run of hers that her line parks: the owner
    # cancels it once its worker is noted as parking it, before its RETRY is stored
    settings.MAX_RUNNING_PER_OWNER = 1
    url = csv_server.serve("/p.csv", PRODUCTS_CSV)

    run = second_run_of_an_owner_at_her_cap(alice, url)
    key = current_app.backend.get_key_for_task(run.celery_task_id)
    park, at_the_cancel = runner._parked, {}

    def cancelled_as_it_parks(parked: ImportRun):
        noted = ImportRun.objects.get(pk=parked.pk)
        at_the_cancel["told"] = noted.error_details.get(services.PARKED_BY) or noted.worker
        services.cancel_run(noted, alice)
        at_the_cancel["stored"] = current_app.backend.client.exists(key)
        park(parked)

    monkeypatch.setattr(runner, "_parked", cancelled_as_it_parks)

    # When its message is handled, and the worker announces the retry
    execute_run.apply(args=[run.pk], task_id=run.celery_task_id)

    # Then the cancel, told of its worker, stored no state for its task
    assert at_the_cancel["told"]
    assert at_the_cancel["stored"] == 0
    # ... its end stored once the worker's RETRY is, by the worker announcing the retry
    assert AsyncResult(run.celery_task_id).state == "RETRY"
    lost_tasks.end_retried_task(
        services.EXECUTE_RUN, run.celery_task_id, [run.pk], "worker@a", in_background=False
    )
    assert AsyncResult(run.celery_task_id).state == "REVOKED"
