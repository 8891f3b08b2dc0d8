"""The result backend keeps a run task's last state for a day (CELERY_RESULT_EXPIRES): a failed
run's error (RunFailed, with the run's message) and a retry's, each with its traceback, which
Flower's API and redis-cli show. `manage.py hide_run_secrets` hides the credential there too, for
the runs saved before the runner hid it, and leaves the state's remaining time as it was."""

from __future__ import annotations

from io import StringIO

import pytest
from celery import current_app
from celery.result import AsyncResult
from django.core.management import call_command
from django.utils import timezone

from tasks.errors import RunFailed
from tests.echo_support import leaks, sent_forms
from tests.factories import make_import
from tests.saved_runs_support import CREDENTIAL, PAIR, legacy_run

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("encryption_key")]


def test_the_command_hides_the_secret_in_the_celery_result_kept_of_an_old_run(alice):
    # Given an old failed run whose task's result still holds its error, the secret in it
    imp = make_import(alice, "https://files.example.com/p.csv", credential=CREDENTIAL)
    run = legacy_run(imp, celery_task_id="old-run-task", finished_at=timezone.now())
    error = f"run {run.pk} failed: the server answered HTTP 503 Basic {PAIR}"
    backend = current_app.backend
    backend.store_result(
        run.celery_task_id, RunFailed(error), "FAILURE",
        traceback=f"Traceback (most recent call last):\ntasks.errors.RunFailed: {error}\n",
    )  # fmt: skip
    key = backend.get_key_for_task(run.celery_task_id)
    backend.client.expire(key, 3600)

    # When the command runs
    out = StringIO()
    call_command("hide_run_secrets", stdout=out)

    # Then the stored state shows the error hidden, in its exception and its traceback
    stored = AsyncResult(run.celery_task_id)
    assert stored.state == "FAILURE"
    assert str(stored.result) == f"run {run.pk} failed: the server answered HTTP 503 Basic [hidden]"
    assert "Basic [hidden]" in stored.traceback
    assert leaks([str(stored.result), stored.traceback], sent_forms(CREDENTIAL)) == []
    # ... it expires when it would have
    assert 3500 < backend.client.ttl(key) <= 3600
    assert (
        "Celery results kept of the runs of imports with a credential: 1 looked at, 1 changed"
        in (out.getvalue())
    )
