"""A run cancelled (or deleted) while parked in its owner's line shows REVOKED in the result
backend (Flower's result page, AsyncResult), as the run log says it is over.

Regression: its task kept the RETRY "waiting its turn" it stored when it was parked, for
CELERY_RESULT_EXPIRES (a day). Its message never comes again (the hand-on drops a run no longer
waiting from the line), and the cancel told Flower REVOKED by an event only
(schedules.revoked_tasks). A cancel landing as the worker parks the run (its RETRY stored after
the cancel's REVOKED) is put right by the worker that announces the retry
(tasks.lost_tasks.end_retried_task, called here as the worker's main process calls it).

In process: the run's message is handled by Celery's tracer, with the real Redis result backend.
"""

import pytest
from celery.result import AsyncResult

from schedules import services
from schedules.models import ImportRun
from tasks import fairness, lost_tasks, runner
from tests.api_support import API, client_for
from tests.factories import PRODUCTS_CSV, make_import
from tests.task_states_support import delivered, run_of

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def at_her_cap(alice, csv_server, settings) -> tuple[ImportRun, str]:
    """Alice at her cap of 1 (a run of hers admitted), and the URL her imports read."""
    settings.MAX_RUNNING_PER_OWNER = 1
    url = csv_server.serve("/p.csv", PRODUCTS_CSV)
    holder = run_of(make_import(alice, url, name="first", dataset="first"))
    assert fairness.admit(holder)
    return holder, url


def stored_writes(round_trips: list, task_id: str) -> int:
    """The writes of `task_id`'s state among the commands sent to Redis."""
    key = f"celery-task-meta-{task_id}".encode()
    packed = [b"".join(sent) if isinstance(sent, list) else sent for sent in round_trips]
    return sum(key in command and b"SETEX" in command for command in packed)


@pytest.mark.parametrize(
    "how",
    [
        lambda run: f"{API}/runs/{run.pk}/cancel",
        lambda run: f"{API}/imports/{run.scheduled_import_id}/cancel",
        lambda run: f"{API}/imports/{run.scheduled_import_id}/",
    ],
    ids=["run cancelled", "import cancelled", "import deleted"],
)
def test_a_run_cancelled_while_parked_shows_revoked(alice, at_her_cap, sent, round_trips, how):
    # Given a second run of alice's, parked in her line by its message: its task says RETRY
    holder, url = at_her_cap
    parked = run_of(make_import(alice, url, name="second", dataset="second"))
    delivered(parked)
    assert AsyncResult(parked.celery_task_id).state == "RETRY"

    # When alice cancels it (or its import), or deletes its import, while it waits
    round_trips.clear()
    target, api = how(parked), client_for(alice)
    answer = api.delete(target) if target.endswith("/") else api.post(target)
    assert answer.status_code in (200, 204)

    # Then its task says REVOKED, stored once, as the run log says it is over
    result = AsyncResult(parked.celery_task_id)
    assert result.state == "REVOKED", result.info
    assert "cancelled, skipped or deleted while it waited" in str(result.info)
    assert stored_writes(round_trips, parked.celery_task_id) == 1
    assert ImportRun.objects.filter(pk=parked.pk, status="queued").first() is None
    # ... and nothing comes to end it otherwise: its slot freed, her line drops it unsent
    fairness.withdraw(holder)
    fairness.hand_on(alice.pk)
    assert sent == []
    assert AsyncResult(parked.celery_task_id).state == "REVOKED"


def test_a_run_cancelled_as_its_worker_parks_it_shows_revoked(alice, at_her_cap, monkeypatch):
    # Given a second run of alice's, whose owner cancels it as its worker parks it: the
    # worker's RETRY is stored after the cancel
    _holder, url = at_her_cap
    run = run_of(make_import(alice, url, name="second", dataset="second"))
    park = runner._parked

    def cancelled_as_it_parks(parked: ImportRun):
        services.cancel_run(ImportRun.objects.get(pk=parked.pk), alice)
        park(parked)

    monkeypatch.setattr(runner, "_parked", cancelled_as_it_parks)

    # When its message is handled, and the worker announces the retry
    delivered(run)
    assert AsyncResult(run.celery_task_id).state == "RETRY"
    lost_tasks.end_retried_task(
        services.EXECUTE_RUN, run.celery_task_id, [run.pk], "worker@a", in_background=False
    )

    # Then its task says REVOKED, as the run log says it was cancelled
    assert ImportRun.objects.get(pk=run.pk).status == "cancelled"
    assert AsyncResult(run.celery_task_id).state == "REVOKED"
