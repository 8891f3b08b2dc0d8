"""A run deleted (with its import) while its worker parks it in its owner's line shows REVOKED,
in Flower and in the result backend, as it is gone.

Regression: the deletion, landing after the worker loaded the run and before its RETRY was
stored, found no worker noted for it (or one whose task had stored nothing yet) and had nothing
to end; the worker then stored RETRY "waiting its turn" and told Flower so, and the worker
announcing the retry (tasks.lost_tasks.end_retried_task) found no run and said nothing more.
Its task said RETRY for good in Flower and for a day in the result backend, its message never
coming again (results2 hunt, left undone there).

In process: the run's message is handled by Celery's tracer, with the real Redis result backend;
the retry's announcement as the worker's main process makes it (end_retried_task), the events it
tells Flower recorded.
"""

import pytest
from celery.result import AsyncResult

from schedules import revoked_tasks, services
from schedules.models import ImportRun
from tasks import fairness, lost_tasks, runner
from tasks.tasks import execute_run
from tests.factories import PRODUCTS_CSV
from tests.task_states_support import second_run_of_an_owner_at_her_cap

pytestmark = pytest.mark.django_db(transaction=True)

WORKER = "worker@a"


@pytest.mark.parametrize(
    ("where", "module", "name"),
    [
        ("before the worker notes it parked", fairness, "_note_waiting"),
        ("after the worker noted it parked", runner, "_parked"),
    ],
)
def test_a_run_deleted_as_its_worker_parks_it_shows_revoked(
    alice, csv_server, settings, monkeypatch, where, module, name
):
    # Given alice at her cap of 1, and a second run of hers whose import she deletes as her
    # line parks it
    settings.MAX_RUNNING_PER_OWNER = 1
    url = csv_server.serve("/p.csv", PRODUCTS_CSV)

    run = second_run_of_an_owner_at_her_cap(alice, url)
    parking = getattr(module, name)

    def deleted_meanwhile(parked: ImportRun, *args):
        services.delete_import(parked.scheduled_import)
        return parking(parked, *args)

    monkeypatch.setattr(module, name, deleted_meanwhile)
    told: list[tuple[str, str]] = []
    show = revoked_tasks.show_revoked
    monkeypatch.setattr(
        revoked_tasks, "show_revoked", lambda tasks: (told.extend(tasks), show(tasks))
    )

    # When its message is handled, and the worker announces the retry
    execute_run.apply(args=[run.pk], task_id=run.celery_task_id)
    assert not ImportRun.objects.filter(pk=run.pk).exists()
    assert AsyncResult(run.celery_task_id).state == "RETRY"
    told.clear()
    lost_tasks.end_retried_task(
        services.EXECUTE_RUN, run.celery_task_id, [run.pk], WORKER, in_background=False
    )

    # Then its task is told REVOKED from that worker, and says so in the result backend
    assert told == [(run.celery_task_id, WORKER)]
    assert AsyncResult(run.celery_task_id).state == "REVOKED"
