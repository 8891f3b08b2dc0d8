"""A run starts no thread of its own: its lease's renewal and its download's watchdog are
checks on the two threads its process keeps for them (common/ticker.py). Before, every run
started (and joined) two threads, a fair share of a 100-row run's CPU (issue 15)."""

import threading

import pytest

from schedules.models import ImportRun
from tasks import runner
from tests.factories import PRODUCTS_CSV, make_import

pytestmark = pytest.mark.django_db(transaction=True)


class Task:
    """The runner's bound Celery task, as far as a run asks of it."""

    def __init__(self, run_id: int) -> None:
        self.request = type("request", (), {"hostname": "worker@test", "id": f"task-{run_id}"})

    def update_state(self, **_kwargs: object) -> None:
        pass


def run_as_a_worker(imp) -> ImportRun:
    run = ImportRun.objects.create(scheduled_import=imp, trigger="manual")
    runner.execute(run.pk, Task(run.pk))
    run.refresh_from_db()
    return run


def test_a_process_runs_import_after_import_on_the_threads_it_has(alice, csv_server, monkeypatch):
    # Given a process that ran an import on a worker's path (its lease renewed, its download
    # watched)
    first = make_import(alice, csv_server.serve("/a.csv", PRODUCTS_CSV), name="a", dataset="a")
    assert run_as_a_worker(first).status == "succeeded"
    started: list[str] = []
    start, this_thread = threading.Thread.start, threading.current_thread()

    def counted(thread: threading.Thread) -> None:
        # Not the CSV server's threads, one per request it answers.
        if threading.current_thread() is this_thread:
            started.append(thread.name)
        start(thread)

    monkeypatch.setattr(threading.Thread, "start", counted)

    # When it runs another
    second = make_import(alice, csv_server.serve("/b.csv", PRODUCTS_CSV), name="b", dataset="b")
    run = run_as_a_worker(second)

    # Then the run landed without starting a thread
    assert (run.status, run.rows_inserted) == ("succeeded", 3)
    assert started == []
