"""A result backend that fails one store at once (a connection a restarted Redis closed, a
failover's refusal) costs the sweep that one end: the pass stores the other lost tasks' ends,
and says the one it did not store.

Regression: the pass's stores (tasks.lost_tasks.EndStore) stopped at the first failure, however
quick: every later end of the pass was left unstored, its task showing PROGRESS in the result
backend until it expired (a day), and no later pass stores an end it told (reviewA hunt). Only a
failure that waited (a silent backend) stops the rest now.

In process: the sweep as a worker's sweep task runs it; the result backend the suite's Redis
behind a relay of this test's own that closes its first connection as the first command comes;
Flower's events recorded.
"""

import logging
import socket
import threading
import urllib.parse
from collections.abc import Iterator

import pytest
from celery import current_app
from celery.backends.redis import RedisBackend
from django.conf import settings

from schedules.models import ImportRun
from tasks import maintenance
from tests.test_a_cancelled_run_the_sweep_ended_ends_once_in_flower import events
from tests.test_a_lost_attempts_task_result_is_its_end_not_its_progress import (
    SWEEPER,
    lost_with_progress,
)

pytestmark = pytest.mark.django_db


class DropsFirstConnection:
    """A TCP relay to `target` that closes the first connection it takes on its first bytes."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(50)
        self.accepted = 0
        self.open: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client = self.listener.accept()[0]
            except OSError:
                return
            self.accepted += 1
            if self.accepted == 1:
                threading.Thread(target=self._drop, args=(client,), daemon=True).start()
                continue
            upstream = socket.create_connection(self.target)
            self.open += [client, upstream]
            for one, other in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(one, other), daemon=True).start()

    @staticmethod
    def _drop(client: socket.socket) -> None:
        client.recv(65536)
        client.close()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                end.close()

    def url(self, db: str) -> str:
        return f"redis://127.0.0.1:{self.listener.getsockname()[1]}/{db}"

    def close(self) -> None:
        self.listener.close()
        for end in self.open:
            end.close()


@pytest.fixture
def relay() -> Iterator[DropsFirstConnection]:
    redis = urllib.parse.urlsplit(settings.REDIS_URL)
    server = DropsFirstConnection((redis.hostname, redis.port))
    yield server
    server.close()


def test_a_store_that_failed_at_once_does_not_leave_the_passes_other_ends_unstored(
    alice, bob, monkeypatch, relay, caplog
):
    # Given two dead workers' attempts (alice's, bob's) whose tasks showed progress
    tasks = [lost_with_progress(alice, retries=0), lost_with_progress(bob, retries=0)]
    runs = [ImportRun.objects.get(celery_task_id=task).pk for task in tasks]
    real = current_app.backend
    # ... and a result backend whose first connection is closed as it is used (one-off)
    db = urllib.parse.urlsplit(real.url).path.lstrip("/") or "0"
    flaky = RedisBackend(app=current_app, url=relay.url(db))
    monkeypatch.setattr(current_app._local, "backend", flaky, raising=False)
    events(monkeypatch)

    # When the sweep passes
    caplog.set_level(logging.WARNING, logger="importbeat.maintenance")
    swept = maintenance.sweep_runs(reporter=SWEEPER)

    # Then both runs are resolved, one end was not stored and the other one was
    assert swept["recovered"] == 2
    states = sorted(real.get_task_meta(task)["status"] for task in tasks)
    assert states == ["FAILURE", "PROGRESS"], states
    # ... and one line says, in words, which run's end it did not store
    said = [r.getMessage() for r in caplog.records if "result backend" in r.getMessage()]
    unstored = next(
        run
        for run, task in zip(runs, tasks, strict=True)
        if real.get_task_meta(task)["status"] == "PROGRESS"
    )
    assert said == [
        f"the result backend was not told the end of 1 lost tasks (runs {unstored}: the server "
        "closed the connection); their tasks show their last state there until a later sweep "
        "stores it, and the run log has each end"
    ]
