"""A credential an owner replaces or removes is hidden in the runs saved under it. Before, only
an import's current credential was ever hidden (by the runner, by migration 0021 and by
`hide_run_secrets`), so a run saved before the change kept the old secret in plain text for
ever. The change keeps the old credential, encrypted, for a worker's job (its message names only
a row id), which hides it in the import's runs and their kept task results, in batches."""

from __future__ import annotations

import base64
import json
import logging
from datetime import timedelta
from io import StringIO

import pytest
import redis
from celery import current_app
from celery.result import AsyncResult
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.conf import settings
from django.core.management import call_command
from django.utils import timezone

from schedules import credentials, replaced_credentials, services
from schedules.models import ImportRun, ReplacedCredential, ScheduledImport
from tasks import maintenance
from tasks import tasks as celery_tasks
from tasks.errors import RunFailed
from tests.api_support import API, client_for
from tests.conftest import wait_for
from tests.factories import make_import
from tests.sftp_support import TEST_ENCRYPTION_KEY
from tests.test_admin_imports import form_data

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("encryption_key")]

SOURCE = "https://files.example.com/p.csv"
OLD = {"kind": "bearer", "token": "old-token-4711"}
NEW = {"kind": "bearer", "token": "new-token-0815"}


def run_saved_with(imp: ScheduledImport, secret: str, **fields) -> ImportRun:
    """A failed run whose source repeated `secret` in every text a run keeps."""
    return ImportRun.objects.create(
        scheduled_import=imp, trigger="schedule", status="failed",
        error_message=f"the server answered HTTP 401: bad token {secret}",
        error_details={
            "attempts": [{"attempt": 1, "error": f"HTTP 401 {secret}", "at": "2026-12-01"}],
            "traceback": f"Traceback (most recent call last):\nValueError: {secret}",
            "rows": [{"line": 2, "column": "key", "value": secret, "reason": "required"}],
        },
        **fields,
    )  # fmt: skip


def hidden_texts() -> tuple[str, dict]:
    return "the server answered HTTP 401: bad token [hidden]", {
        "attempts": [{"attempt": 1, "error": "HTTP 401 [hidden]", "at": "2026-12-01"}],
        "traceback": "Traceback (most recent call last):\nValueError: [hidden]",
        "rows": [{"line": 2, "column": "key", "value": "[hidden]", "reason": "required"}],
    }


def texts(run: ImportRun) -> tuple[str, dict]:
    run.refresh_from_db()
    return run.error_message, run.error_details


def hide_what_was_replaced() -> list:
    """What a worker does with the jobs the changes sent: each waiting one, run here."""
    pending = ReplacedCredential.objects.order_by("pk").values_list("pk", flat=True)
    return [celery_tasks.hide_replaced_credential(pk) for pk in pending]


def test_a_credential_changed_through_the_api_is_hidden_in_the_runs_saved_under_it(
    alice, bob, django_capture_on_commit_callbacks
):
    # Given alice's import with a token, a run that repeated it, and a run of another import
    # (bob's) whose text happens to hold the same characters
    imp = make_import(alice, SOURCE, credential=OLD)
    old_run = run_saved_with(imp, OLD["token"])
    other = make_import(bob, SOURCE)
    unrelated = run_saved_with(other, OLD["token"])
    old_secret = ScheduledImport.objects.get(pk=imp.pk).credential_secret

    # When alice gives the import another token through the API
    with django_capture_on_commit_callbacks(execute=True):
        answer = client_for(alice).patch(
            f"{API}/imports/{imp.pk}/", {"credential": NEW}, format="json"
        )
    assert answer.status_code == 200, answer.json()

    # Then a job names the kept credential by id only: the old token is in no message, and
    # is kept encrypted as it was saved
    (replaced,) = ReplacedCredential.objects.all()
    assert replaced.secret == old_secret and OLD["token"] not in replaced.secret
    (message,) = messages_of(replaced_credentials.HIDE, [replaced.pk])
    assert OLD["token"] not in message

    # and once a worker runs it, the old token is hidden in the old run, nowhere else
    assert hide_what_was_replaced() == [{"import": imp.pk, "runs": 1, "results": 0}]
    assert texts(old_run) == hidden_texts()
    assert OLD["token"] in texts(unrelated)[0]
    assert not ReplacedCredential.objects.exists()


@pytest.mark.processes
@pytest.mark.django_db(transaction=True)
def test_a_worker_hides_the_old_credential_once_the_change_commits(alice, processes):
    # Given a worker (Procfile) and an import whose old run repeated its token
    processes.start("worker", IMPORTBEAT_ENCRYPTION_KEY=TEST_ENCRYPTION_KEY)
    imp = make_import(alice, SOURCE, credential=OLD)
    old_run = run_saved_with(imp, OLD["token"])

    # When alice replaces the token through the API
    client_for(alice).patch(f"{API}/imports/{imp.pk}/", {"credential": NEW}, format="json")

    # Then the worker hides the old one in the run, and forgets it
    wait_for(lambda: texts(old_run) == hidden_texts(), 60, what="hiding\n" + processes.logs())
    wait_for(lambda: not ReplacedCredential.objects.exists(), 30, what="the row deleted")


def test_a_credential_removed_through_the_api_is_hidden_in_the_runs_saved_under_it(alice):
    imp = make_import(alice, SOURCE, credential=OLD)
    old_run = run_saved_with(imp, OLD["token"])

    answer = client_for(alice).patch(
        f"{API}/imports/{imp.pk}/", {"credential": None}, format="json"
    )
    assert answer.status_code == 200, answer.json()
    hide_what_was_replaced()

    assert texts(old_run) == hidden_texts()


def test_a_credential_changed_in_the_admin_is_hidden_in_the_runs_saved_under_it(
    admin_client, alice
):
    imp = make_import(alice, SOURCE, credential=OLD)
    old_run = run_saved_with(imp, OLD["token"])

    changed = admin_client.post(
        f"/admin/schedules/scheduledimport/{imp.pk}/change/",
        form_data(imp, credential="bearer", credential_password="from-the-admin",
                  notify_on="[]", notify_channels='["email"]'),
    )  # fmt: skip
    assert changed.status_code == 302, changed.context["adminform"].form.errors
    hide_what_was_replaced()

    assert texts(old_run) == hidden_texts()


def test_an_sftp_key_and_passphrase_changed_in_code_are_hidden(alice, settings):
    # Given an SFTP import with an encrypted private key, its passphrase repeated by a run, as
    # a command or a shell session changes it (services.update_import, the surfaces' service)
    passphrase = "correct horse 42"
    key = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(passphrase.encode()),
    ).decode()  # fmt: skip
    sftp = "sftp://feed@files.example.com/out/p.csv"
    imp = make_import(
        alice,
        sftp,
        credential={"kind": "private_key", "private_key": key, "passphrase": passphrase},
    )
    old_run = run_saved_with(imp, passphrase)

    services.update_import(imp, credential={"kind": "password", "password": "s3cret-now"})
    hide_what_was_replaced()

    assert texts(old_run) == hidden_texts()


def test_hiding_is_in_batches_and_changes_nothing_the_second_time(alice):
    # Given more old runs than a batch, a run without the secret, and one hidden already
    imp = make_import(alice, SOURCE, credential=OLD)
    old_runs = [run_saved_with(imp, OLD["token"]) for _ in range(5)]
    clean = ImportRun.objects.create(scheduled_import=imp, trigger="api", error_message="HTTP 500")
    services.update_import(imp, credential=NEW)
    (replaced,) = ReplacedCredential.objects.all()

    # When the job runs two runs at a time, then is sent again (a message delivered twice)
    first = replaced_credentials.hide(replaced.pk, batch_size=2)
    again = replaced_credentials.hide(replaced.pk, batch_size=2)

    # Then each old run is hidden once, and the second job finds nothing left to do
    assert first["runs"] == 5 and again is None
    assert all(texts(run) == hidden_texts() for run in old_runs)
    assert texts(clean) == ("HTTP 500", {})
    # and the same credential hidden anew changes nothing
    replaced_credentials.remember(imp, replaced.secret)
    assert hide_what_was_replaced()[0]["runs"] == 0


def test_a_job_cut_short_resumes_after_the_last_batch_it_wrote(alice):
    imp = make_import(alice, SOURCE, credential=OLD)
    runs = [run_saved_with(imp, OLD["token"]) for _ in range(4)]
    services.update_import(imp, credential=NEW)
    # Given a job that wrote its batches up to the second run before its worker was lost
    ReplacedCredential.objects.update(done_until=runs[1].pk)

    hide_what_was_replaced()

    # (the first two are left as the lost job is taken to have written them)
    assert [texts(run) == hidden_texts() for run in runs] == [False, False, True, True]


def test_an_edit_that_keeps_the_credential_hides_nothing(alice):
    imp = make_import(alice, SOURCE, credential=OLD)

    client_for(alice).patch(f"{API}/imports/{imp.pk}/", {"description": "new"}, format="json")
    services.pause_import(ScheduledImport.objects.get(pk=imp.pk))

    assert not ReplacedCredential.objects.exists()


def test_the_old_credential_is_hidden_in_the_celery_results_kept_of_its_runs(alice):
    # Given an old run whose task's failure the result backend still keeps, the token in it
    imp = make_import(alice, SOURCE, credential=OLD)
    run = run_saved_with(
        imp, OLD["token"], celery_task_id="old-run-task", finished_at=timezone.now()
    )
    error = f"run {run.pk} failed: bad token {OLD['token']}"
    current_app.backend.store_result(
        run.celery_task_id, RunFailed(error), "FAILURE",
        traceback=f"Traceback (most recent call last):\ntasks.errors.RunFailed: {error}\n",
    )  # fmt: skip

    services.update_import(imp, credential=NEW)
    assert hide_what_was_replaced()[0]["results"] == 1

    stored = AsyncResult(run.celery_task_id)
    assert str(stored.result) == f"run {run.pk} failed: bad token [hidden]"
    assert OLD["token"] not in stored.traceback


def test_a_job_whose_message_was_lost_is_sent_again_by_the_sweep(alice):
    # Given a change whose job never reached the broker (its message lost, long ago)
    imp = make_import(alice, SOURCE, credential=OLD)
    services.update_import(imp, credential=NEW)
    stale = timezone.now() - timedelta(seconds=settings.STALE_QUEUED_SECONDS + 1)
    ReplacedCredential.objects.update(touched_at=stale)
    (replaced,) = ReplacedCredential.objects.all()

    # When the sweep runs, twice
    first = maintenance.sweep_runs()["replaced_credentials"]
    second = maintenance.sweep_runs()["replaced_credentials"]

    # Then the job was sent again, once
    assert (first, second) == (1, 0)
    assert len(messages_of(replaced_credentials.HIDE, [replaced.pk])) == 1


def test_a_replaced_credential_no_key_opens_is_said_and_forgotten(alice, settings, caplog):
    imp = make_import(alice, SOURCE, credential=OLD)
    old_run = run_saved_with(imp, OLD["token"])
    services.update_import(imp, credential=NEW)
    settings.IMPORTBEAT_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]

    with caplog.at_level(logging.ERROR, logger="importbeat.credentials"):
        (done,) = hide_what_was_replaced()

    assert done["unreadable"] and not ReplacedCredential.objects.exists()
    assert f"import={imp.pk}: a credential it had is not hidden" in caplog.text
    assert OLD["token"] in texts(old_run)[0]


def test_key_rotation_re_encrypts_a_replaced_credential_still_waiting(alice, settings):
    imp = make_import(alice, SOURCE, credential=OLD)
    old_run = run_saved_with(imp, OLD["token"])
    services.update_import(imp, credential=NEW)
    new_key = Fernet.generate_key().decode()
    settings.IMPORTBEAT_ENCRYPTION_KEYS = [new_key, *settings.IMPORTBEAT_ENCRYPTION_KEYS]

    out = StringIO()
    call_command("rotate_credentials", stdout=out)
    settings.IMPORTBEAT_ENCRYPTION_KEYS = [new_key]

    assert "re-encrypted 1 replaced credential(s) still to be hidden" in out.getvalue()
    assert credentials.decrypt(ReplacedCredential.objects.get().secret) == OLD
    hide_what_was_replaced()
    assert texts(old_run) == hidden_texts()


def messages_of(task: str, args: list) -> list[str]:
    """The broker's waiting messages of `task` with `args`, each as it is stored (body decoded)."""
    broker = redis.Redis.from_url(current_app.conf.broker_url)
    found = []
    for raw in broker.lrange(current_app.conf.task_default_queue, 0, -1):
        message = json.loads(raw)
        body = base64.b64decode(message["body"]).decode()
        if message["headers"]["task"] == task and json.loads(body)[0] == args:
            found.append(raw.decode() + body)
    return found
