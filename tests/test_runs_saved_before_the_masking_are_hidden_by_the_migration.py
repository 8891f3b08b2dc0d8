"""Runs saved before the runner hid the credential in their texts kept it where their source had
repeated it (their message, attempts, traceback, row errors: the API, the admin, alerts and
webhooks show them). Migration 0021 passes them through the same hiding, when the encryption
keys are configured at migration time; without them it leaves them, and says how to do it."""

from __future__ import annotations

import pytest

from schedules import saved_secrets
from schedules.models import ImportRun
from tests.echo_support import leaks, sent_forms
from tests.factories import make_import
from tests.saved_runs_support import (
    CREDENTIAL,
    hidden_texts,
    legacy_run,
    legacy_texts,
    run_data_migration,
    texts,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("encryption_key")]

SOURCE = "https://files.example.com/p.csv"


def run_migration_0021() -> None:
    run_data_migration("schedules", "0021_hide_secrets_in_saved_runs")


def test_the_migration_hides_each_form_of_the_secret_in_runs_saved_before(alice, capsys):
    # Given a run saved before the masking, its source's echo of the credential in each form,
    # and the same texts on a run of an import without a credential
    imp = make_import(alice, SOURCE, credential=CREDENTIAL)
    legacy = legacy_run(imp)
    plain = make_import(alice, SOURCE, name="no credential", dataset="other")
    untouched = legacy_run(plain)
    succeeded = ImportRun.objects.create(scheduled_import=imp, trigger="api", status="succeeded")

    # When migration 0021 runs
    run_migration_0021()

    # Then the run's texts read as the runner writes them now, no form of the secret left
    assert texts(legacy) == hidden_texts()
    assert leaks(texts(legacy), sent_forms(CREDENTIAL)) == []
    # ... the other import's run is as it was, and a run without a text was not read
    assert texts(untouched) == legacy_texts()
    assert texts(succeeded) == ("", {})
    assert "runs of imports with a credential: 1 looked at, 1 changed" in capsys.readouterr().out


def test_without_an_encryption_key_the_migration_leaves_the_runs_and_says_so(
    alice, settings, capsys
):
    # Given a run saved before the masking, and no encryption key when migrating
    imp = make_import(alice, SOURCE, credential=CREDENTIAL)
    legacy = legacy_run(imp)
    settings.IMPORTBEAT_ENCRYPTION_KEYS = []

    # When migration 0021 runs
    run_migration_0021()

    # Then the run is as it was, and the migration's output says what to do
    assert texts(legacy) == legacy_texts()
    assert saved_secrets.NO_KEY in capsys.readouterr().out
