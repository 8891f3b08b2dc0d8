"""Deleting a run while a worker ends a run of its import is no deadlock (services.delete_runs).

Regression (review of this round): delete_runs locked the runs' imports first, and a worker's end
of a run (_finish_once) locks the run, then its import: an operator deleting a running run (or
its owner's account), or the failed run a running retry retries (its `retry_of` set to NULL),
held the import while the worker held the run, and PostgreSQL ended one of them (the worker's
rows rolled back, or the admin's delete a 500). The runs go first now, then their imports, in id
order.
"""

from __future__ import annotations

import threading

import pytest
from django.db import connection, transaction

from schedules import services
from schedules.models import ImportRun
from tests.api_support import SOURCE
from tests.factories import make_import
from tests.reliability import wait_until_a_session_waits_for_a_lock

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize("deleted", ["the running run", "the run it retries"])
def test_deleting_a_run_while_a_worker_ends_a_run_of_its_import_is_no_deadlock(
    alice, monkeypatch, deleted
):
    imp = make_import(alice, SOURCE)
    failed = ImportRun.objects.create(
        scheduled_import=imp, trigger="api", status="failed", celery_task_id="t-failed",
    )  # fmt: skip
    run = ImportRun.objects.create(
        scheduled_import=imp, trigger="api", status="running", celery_task_id="t-running",
        retry_of=failed,
    )  # fmt: skip
    doomed = run if deleted == "the running run" else failed
    errors: dict[str, BaseException] = {}
    locked_imports = threading.Event()
    go_on = threading.Event()
    real_statements = services.runs_deletion

    def pause_before_deleting():
        # The deletion's own statements next: before the runs (its import locks came first).
        locked_imports.set()
        go_on.wait(10)
        return real_statements()

    monkeypatch.setattr(services, "runs_deletion", pause_before_deleting)

    def delete() -> None:
        try:
            services.delete_runs(ImportRun.objects.filter(pk=doomed.pk))
        except BaseException as error:
            errors["deletion"] = error
        finally:
            connection.close()

    def finish() -> None:
        # As the merge ends a small file's run: in the transaction of its rows (no retry there;
        # finish_run's own retry only hides the deadlock behind a warning and a pause).
        try:
            with transaction.atomic():
                services._finish_once(
                    run.pk, ImportRun.Status.SUCCEEDED, None, "", "", {}, with_rows=True
                )
        except BaseException as error:
            errors["worker"] = error
        finally:
            connection.close()

    deleter = threading.Thread(target=delete)
    deleter.start()
    locked_imports.wait(5)
    worker = threading.Thread(target=finish)
    worker.start()
    wait_until_a_session_waits_for_a_lock(5)
    go_on.set()
    deleter.join(30)
    worker.join(30)

    assert not errors, {who: str(error) for who, error in errors.items()}
    assert not ImportRun.objects.filter(pk=doomed.pk).exists()
