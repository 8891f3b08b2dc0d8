"""A worker answers health's database question within ANSWER_WITHIN_SECONDS, however long its
check takes (project/worker_checks.py), and a pool process is never forked while that check's
thread is inside libpq: the fork waits for the check to end."""

from __future__ import annotations

import os
import time

import pytest

from project import worker_checks

pytestmark = pytest.mark.django_db(transaction=True)

CHECK_SECONDS = 1.0


@pytest.fixture
def slow_check(monkeypatch):
    """A database that takes a second to answer, and nothing known of it yet."""

    def slow() -> str | None:
        time.sleep(CHECK_SECONDS)
        return "cannot reach the database at 10.0.0.5:5432: timed out"

    monkeypatch.setattr(worker_checks, "database_problem", slow)
    monkeypatch.setattr(
        worker_checks, "_checked", worker_checks.Checked(time.monotonic() - 60, None)
    )
    yield
    # The check under way ends before the next test
    assert worker_checks._checking.acquire(timeout=5)
    worker_checks._checking.release()


@pytest.mark.usefixtures("slow_check")
def test_the_answer_is_the_last_check_while_the_next_one_is_under_way():
    started = time.monotonic()
    first = worker_checks.importbeat_database(None)
    answered = time.monotonic() - started

    assert answered < worker_checks.ANSWER_WITHIN_SECONDS + 0.2
    assert first["ok"] is True and first["checked_seconds_ago"] >= 60
    # ... and once the check has ended, its outcome is the answer
    time.sleep(CHECK_SECONDS + 0.2)
    second = worker_checks.importbeat_database(None)
    assert second == {
        "ok": False,
        "checked_seconds_ago": second["checked_seconds_ago"],
        "error": "cannot reach the database at 10.0.0.5:5432: timed out",
        **({"clock_offset_seconds": second["clock_offset_seconds"]}
           if "clock_offset_seconds" in second else {}),
    }  # fmt: skip
    assert second["checked_seconds_ago"] < 1


@pytest.mark.usefixtures("slow_check")
def test_a_fork_waits_for_the_check_under_way():
    worker_checks.importbeat_database(None)  # starts the check, answers the last one
    assert worker_checks._checking.locked()

    started = time.monotonic()
    child = os.fork()
    if child == 0:
        os._exit(0 if not worker_checks._checking.locked() else 1)
    forked_after = time.monotonic() - started
    _, status = os.waitpid(child, 0)

    # The fork came once the check had ended, and the child holds no lock of its parent's
    assert forked_after >= CHECK_SECONDS - worker_checks.ANSWER_WITHIN_SECONDS - 0.2
    assert worker_checks._checked.problem is not None
    assert os.waitstatus_to_exitcode(status) == 0
    assert not worker_checks._checking.locked()
