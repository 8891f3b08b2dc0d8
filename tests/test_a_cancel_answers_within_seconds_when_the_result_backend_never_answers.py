"""A cancel of a waiting run answers within seconds, its run cancelled, when the result backend's
Redis accepts connections and never answers (a blackholed link, a stuck proxy).

Regression: the REVOKED a cancel stores for its waiting runs' tasks (schedules.revoked_tasks)
went through Celery's client of the result backend, in the request, after Flower was told: it
waited CELERY_REDIS_SOCKET_TIMEOUT (10 s) on the first task's GET. It now waits about a second,
as /health does, and the log says in words that the state was not stored (it expires as
before; the run log is the truth).

In process: the run is parked by Celery's tracer on the real Redis result backend, then the
result backend is a listener that takes connections and never answers.
"""

import logging
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from celery import current_app
from celery.backends.redis import RedisBackend
from celery.result import AsyncResult

from schedules.models import ImportRun
from tasks.tasks import execute_run
from tests.api_support import API, client_for
from tests.factories import PRODUCTS_CSV
from tests.task_states_support import second_run_of_an_owner_at_her_cap

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def silent_redis() -> Iterator[str]:
    """The URL of a server that accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(50)
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                held.append(listener.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    yield f"redis://127.0.0.1:{listener.getsockname()[1]}/0"
    listener.close()
    for connection in held:
        connection.close()


def test_a_cancel_answers_within_seconds_when_the_result_backend_never_answers(
    alice, csv_server, settings, silent_redis, monkeypatch, caplog
):
    # Given a run of alice's parked in her line by its worker (its task says RETRY)
    settings.MAX_RUNNING_PER_OWNER = 1
    url = csv_server.serve("/p.csv", PRODUCTS_CSV)

    parked = second_run_of_an_owner_at_her_cap(alice, url)
    execute_run.apply(args=[parked.pk], task_id=parked.celery_task_id)
    assert AsyncResult(parked.celery_task_id).state == "RETRY"
    # ... and a result backend that now accepts connections and never answers
    silent = RedisBackend(app=current_app, url=silent_redis)
    monkeypatch.setattr(current_app._local, "backend", silent, raising=False)
    assert current_app.backend is silent

    # When alice cancels the run
    caplog.set_level(logging.WARNING, logger="importbeat.runs")
    started = time.monotonic()
    answer = client_for(alice).post(f"{API}/runs/{parked.pk}/cancel")
    took = time.monotonic() - started

    # Then the request answers well within the 10 s it waited, the run cancelled
    assert answer.status_code == 200
    assert ImportRun.objects.get(pk=parked.pk).status == "cancelled"
    assert took < 6, f"the cancel took {took:.1f} s"
    # ... and the log says in words that its task's state was not stored
    said = [r.getMessage() for r in caplog.records if "result backend" in r.getMessage()]
    assert said == [
        "the tasks of 1 waiting runs just ended still say they wait in the result backend "
        "(not stored as revoked: timed out)"
    ], said
