"""Progress (bytes read, bytes total, rows read) is visible while a run is still going, once it
has lasted long enough to be seen (VISIBLE_AFTER_SECONDS)."""

import pytest

from schedules.models import ImportRun
from tasks import engine, runner
from tasks.engine import progress as engine_progress
from tests.factories import make_import
from tests.importer_support import from_another_connection

BODY = "sku,name\n" + "".join(f"K-{i:06d},name {i}\n" for i in range(40_000))


@pytest.fixture
def fast_progress(monkeypatch):
    monkeypatch.setattr(engine_progress, "PROGRESS_EVERY_SECONDS", 0.05)


class RecordingTask:
    """A bound Celery task stand-in that records its state updates (Flower's view)."""

    class request:
        id = "task-progress"
        hostname = "worker@test"

    def __init__(self) -> None:
        self.states: list[tuple[str, dict]] = []

    def update_state(self, state: str, meta: dict) -> None:
        self.states.append((state, meta))


def read_run_from_another_connection(run_id: int) -> tuple:
    return from_another_connection(
        lambda: ImportRun.objects.values_list("bytes_read", "bytes_total", "rows_read").get(
            pk=run_id
        )
    )


@pytest.mark.django_db(transaction=True)
def test_progress_is_in_the_run_row_and_the_task_state_while_running(
    alice, csv_server, fast_progress
):
    # Given a file served slowly (64 KiB every 100 ms: about 1.3 s)
    imp = make_import(alice, csv_server.serve("/p.csv", BODY, chunk_delay=0.1))
    run = ImportRun.objects.create(scheduled_import=imp, trigger="manual")
    task = RecordingTask()
    seen_elsewhere = []

    def watch(progress: dict) -> None:
        if progress["bytes_read"] < len(BODY):
            seen_elsewhere.append(read_run_from_another_connection(run.pk))

    # When a worker runs it
    with engine.listen(watch):
        runner.execute(run.pk, task)

    # Then other connections saw progress before the end, and so did the task state
    # (the first half second shows nothing: a run that short publishes no progress)
    shown = [seen for seen in seen_elsewhere if seen[0]]
    assert shown, f"no progress shown before the download ended: {seen_elsewhere}"
    bytes_read, bytes_total, _rows = shown[0]
    assert 0 < bytes_read < len(BODY) and bytes_total == len(BODY)
    assert any(meta["rows_read"] > 0 for _state, meta in task.states)
    assert {state for state, _ in task.states} == {"PROGRESS"}
    assert all(meta["run_id"] == run.pk for _state, meta in task.states)
    run.refresh_from_db()
    assert (run.status, run.rows_read, run.bytes_read) == ("succeeded", 40_000, len(BODY))
