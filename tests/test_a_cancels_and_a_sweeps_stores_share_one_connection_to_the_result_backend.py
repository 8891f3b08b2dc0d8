"""A process that stores a cancelled run's REVOKED and a lost task's end keeps one connection to
the result backend for both, through one bounded client (common.result_backend).

Regression (results3 hunt): schedules.revoked_tasks and tasks.lost_tasks each built a client of
their own of the result backend's Redis, with the same short waits and no retries: every worker
process kept two pools of connections to the same Redis, two connections where one did.

In process: the result backend a Redis of the test's own, whose connections it counts.
"""

import pytest
import redis

from schedules import revoked_tasks
from schedules.models import ImportRun
from tasks import lost_tasks
from tests.result_backend_support import result_backend_of_its_own


@pytest.fixture
def results_redis(tmp_path, monkeypatch):
    """A result backend on a Redis of its own, and a client of that Redis to count with."""
    with result_backend_of_its_own(tmp_path, monkeypatch) as (_, backend, admin):
        yield backend, admin


def connections_received(admin: redis.Redis) -> int:
    return admin.info("stats")["total_connections_received"]


def test_a_cancel_and_a_lost_end_stored_in_one_process_use_one_connection(results_redis):
    backend, admin = results_redis
    # Given a waiting run's task that stored its RETRY and a lost attempt's task its PROGRESS
    backend.store_result("waiting-task", None, "RETRY")
    backend.store_result("lost-task", {"rows_read": 3}, "PROGRESS")
    before = connections_received(admin)

    # When the waiting run is cancelled, and the sweep stores the lost attempt's end
    revoked_tasks.stored_revoked(["waiting-task"])
    ends = lost_tasks.EndStore()
    ends.end("lost-task", ImportRun(pk=7), False, "run 7 failed: the worker was lost")

    # Then they were stored over one connection between them
    assert connections_received(admin) - before == 1
    # ... both of them
    assert ends.not_stored == []
    assert backend.get_task_meta("waiting-task")["status"] == "REVOKED"
    assert backend.get_task_meta("lost-task")["status"] == "FAILURE"
