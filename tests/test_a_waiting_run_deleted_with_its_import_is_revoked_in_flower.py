"""A waiting run deleted with its import, with its owner or alone shows REVOKED in Flower at
once (endings hunt): deleted in its backoff, its task stayed RETRY until its countdown ended (up
to `retry_backoff_max_seconds`); parked in its owner's line, for good, since nothing sends a
deleted parked run again. Every other surface had no run left to show."""

import pytest

from schedules import revoked_tasks, services
from schedules.models import ImportRun
from tests.api_support import API, SOURCE, client_for, make_run
from tests.factories import make_import

pytestmark = pytest.mark.django_db


@pytest.fixture
def revoked(monkeypatch) -> list[tuple[str, str]]:
    """The tasks Flower is told are revoked: (task id, the worker that tells)."""
    told: list[tuple[str, str]] = []
    monkeypatch.setattr(revoked_tasks, "show_revoked", lambda tasks: told.extend(tasks))
    return told


def waiting_runs(imp) -> list[ImportRun]:
    """A run in its backoff, one parked in its owner's line, one queued that no worker took."""
    return [
        make_run(imp, "retrying", celery_task_id="in-backoff", worker="worker@a"),
        make_run(
            imp,
            "queued",
            celery_task_id="parked",
            worker="",
            error_details={services.PARKED_BY: "worker@b"},
        ),
        make_run(imp, "queued", celery_task_id="never-taken", worker=""),
    ]


def test_a_waiting_run_deleted_with_its_import_is_revoked_in_flower(
    alice, revoked, django_capture_on_commit_callbacks
):
    # Given alice's import with a run in its backoff, one parked in her line, and a finished one
    imp = make_import(alice, SOURCE)
    waiting_runs(imp)
    make_run(imp, "failed", celery_task_id="over", worker="worker@a")

    # When she deletes the import
    with django_capture_on_commit_callbacks(execute=True):
        assert client_for(alice).delete(f"{API}/imports/{imp.pk}/").status_code == 204

    # Then Flower is told that the waiting runs' tasks are over, each by the worker that spoke
    # last of it (one no worker took has no task in Flower yet)
    assert sorted(revoked) == [("in-backoff", "worker@a"), ("never-taken", ""),
                               ("parked", "worker@b")]  # fmt: skip


def test_a_waiting_run_deleted_alone_is_revoked_in_flower(
    alice, bob, revoked, django_capture_on_commit_callbacks
):
    # Given bob's run in its backoff, and alice's
    waiting = make_run(make_import(bob, SOURCE), "retrying", celery_task_id="bobs",
                       worker="worker@b")  # fmt: skip
    make_run(make_import(alice, SOURCE), "retrying", celery_task_id="alices", worker="worker@a")

    # When bob's run is deleted alone (the admin)
    with django_capture_on_commit_callbacks(execute=True):
        services.delete_runs(ImportRun.objects.filter(pk=waiting.pk))

    # Then its task alone is revoked
    assert revoked == [("bobs", "worker@b")]


def test_deleting_finished_runs_tells_flower_nothing(
    alice, revoked, django_capture_on_commit_callbacks
):
    imp = make_import(alice, SOURCE)
    make_run(imp, "succeeded", celery_task_id="done", worker="worker@a")

    with django_capture_on_commit_callbacks(execute=True):
        services.delete_runs(imp.runs.all())

    assert revoked == []
