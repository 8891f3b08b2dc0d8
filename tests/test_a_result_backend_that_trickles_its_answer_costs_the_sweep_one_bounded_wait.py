"""A sweep pass whose result backend answers a byte at a time, each within the wait for an
answer (a Redis slower than its link, a stuck proxy), gives up on it after the pass's bound
(2 s), and says so in its line of the ends it did not store.

Regression: the wait for each answer (tasks.lost_tasks.STORE_WAIT_SECONDS, the socket's
timeout) began again at each byte, so one store waited as long as the answer took: 34 s for 42
bytes at 0.8 s each, the pass's bound of 2 s held only against a backend wholly silent, and the
sweep's soft time limit ended the pass (reviewA hunt). A store still waiting after the bound has
its connections cut.

In process: the sweep as a worker's sweep task runs it; the result backend a listener of this
test's own that answers the first command a byte every half second; Flower's events recorded.
"""

import logging
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from celery import current_app
from celery.backends.redis import RedisBackend

from schedules.models import ImportRun
from tasks import maintenance
from tests.test_a_cancelled_run_the_sweep_ended_ends_once_in_flower import events
from tests.test_a_lost_attempts_task_result_is_its_end_not_its_progress import (
    SWEEPER,
    lost_with_progress,
)

pytestmark = pytest.mark.django_db

BYTE_EVERY_SECONDS = 0.5


class TricklingServer:
    """Answers the first command on each connection with a 40-byte bulk string, a byte at a
    time; stops trickling when closed."""

    def __init__(self) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(50)
        self.closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.listener.getsockname()[1]}/0"

    def _accept(self) -> None:
        while True:
            try:
                client = self.listener.accept()[0]
            except OSError:
                return
            threading.Thread(target=self._trickle, args=(client,), daemon=True).start()

    def _trickle(self, client: socket.socket) -> None:
        with client:
            try:
                client.recv(65536)
                for byte in b"$40\r\n" + b"x" * 40 + b"\r\n":
                    if self.closed.wait(BYTE_EVERY_SECONDS):
                        return
                    client.sendall(bytes([byte]))
            except OSError:
                return

    def close(self) -> None:
        self.closed.set()
        self.listener.close()


@pytest.fixture
def trickling_server() -> Iterator[TricklingServer]:
    server = TricklingServer()
    yield server
    server.close()


def test_a_backend_answering_a_byte_at_a_time_is_given_up_after_the_passes_bound(
    alice, monkeypatch, trickling_server, caplog
):
    # Given a dead worker's attempt whose task showed progress, and a result backend that
    # answers a byte every half second
    lost_with_progress(alice, retries=0)
    run = ImportRun.objects.get()
    trickling = RedisBackend(app=current_app, url=trickling_server.url)
    monkeypatch.setattr(current_app._local, "backend", trickling, raising=False)
    events(monkeypatch)

    # When the sweep passes
    caplog.set_level(logging.WARNING, logger="importbeat.maintenance")
    started = time.monotonic()
    maintenance.sweep_runs(reporter=SWEEPER)
    print(f"the pass took {time.monotonic() - started:.1f} s")

    # Then it gave that backend up after its bound, and says so in words
    said = [r.getMessage() for r in caplog.records if "result backend" in r.getMessage()]
    assert said == [
        f"the result backend was not told the end of 1 lost tasks (runs {run.pk}: it did not "
        "answer within 2 s); their tasks show their last state there until a later sweep stores "
        "it, and the run log has each end"
    ]
