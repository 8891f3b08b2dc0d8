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

import time
from collections.abc import Iterator

import pytest

from schedules.models import ImportRun
from tests import result_backend_support as backends
from tests.test_a_cancelled_run_the_sweep_ended_ends_once_in_flower import events
from tests.test_a_lost_attempts_task_result_is_its_end_not_its_progress import lost_with_progress

pytestmark = pytest.mark.django_db

BYTE_EVERY_SECONDS = 0.5


@pytest.fixture
def trickling_server() -> Iterator[backends.TricklingRedis]:
    yield from backends.serving(backends.TricklingRedis(byte_every=BYTE_EVERY_SECONDS))


def test_a_backend_answering_a_byte_at_a_time_is_given_up_after_the_passes_bound(
    alice, monkeypatch, trickling_server, caplog
):
    # Given a dead worker's attempt whose task showed progress, and a result backend that
    # answers a byte every half second
    lost_with_progress(alice, retries=0)
    run = ImportRun.objects.get()
    backends.use_result_backend(monkeypatch, trickling_server.url)
    events(monkeypatch)

    # When the sweep passes
    started = time.monotonic()
    backends.sweep(caplog)
    print(f"the pass took {time.monotonic() - started:.1f} s")

    # Then it gave that backend up after its bound, and says so in words
    assert backends.said_of_the_result_backend(caplog) == [
        f"the result backend was not told the end of 1 lost tasks (runs {run.pk}: it did not "
        "answer within 2 s); their tasks show their last state there until a later sweep stores "
        "it, and the run log has each end"
    ]
