"""`manage.py hide_run_secrets`, for operators who migrated without the encryption keys: it hides
each import's credential in the runs saved before the runner hid it, as migration 0021 does, says
how many runs it looked at and changed, reads them in batches, and changes nothing the second
time. Without a key it says so, and changes nothing."""

from __future__ import annotations

from io import StringIO

import pytest
from cryptography.fernet import Fernet
from django.core.management import CommandError, call_command

from schedules import credentials, saved_secrets
from schedules.models import ImportRun, ScheduledImport
from tests.echo_support import leaks, sent_forms
from tests.factories import make_import
from tests.saved_runs_support import CREDENTIAL, hidden_texts, legacy_run, legacy_texts, texts

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("encryption_key")]

SOURCE = "https://files.example.com/p.csv"


def hide_run_secrets(*args: str) -> str:
    out = StringIO()
    call_command("hide_run_secrets", *args, stdout=out)
    return out.getvalue()


def test_the_command_hides_each_form_of_the_secret_in_runs_saved_before(alice):
    # Given runs saved before the masking, of two imports with a credential (more runs than a
    # batch), a run already hidden, and the same texts on an import without a credential
    first = make_import(alice, SOURCE, credential=CREDENTIAL)
    second = make_import(alice, SOURCE, name="second", dataset="second", credential=CREDENTIAL)
    legacy = [legacy_run(first), legacy_run(second), legacy_run(first)]
    message, details = hidden_texts()
    ImportRun.objects.create(
        scheduled_import=first, trigger="api", error_message=message, error_details=details
    )
    plain = make_import(alice, SOURCE, name="no credential", dataset="other")
    untouched = legacy_run(plain)

    # When the command runs, two runs at a time
    said = hide_run_secrets("--batch-size", "2")

    # Then every old run reads as the runner writes them now, no form of the secret left
    for run in legacy:
        assert texts(run) == hidden_texts()
        assert leaks(texts(run), sent_forms(CREDENTIAL)) == []
    # ... the run of the import without a credential is as it was
    assert texts(untouched) == legacy_texts()
    # ... and it said what it did: the runs of imports with a credential, only they
    assert "runs of imports with a credential: 4 looked at, 3 changed" in said


def test_a_second_run_of_the_command_changes_nothing(alice):
    # Given old runs, one of an import whose password is a piece of the marker itself
    imp = make_import(alice, SOURCE, credential=CREDENTIAL)
    short = make_import(
        alice, SOURCE, name="short", dataset="short",
        credential={"kind": "basic", "username": "feed", "password": "e"},
    )  # fmt: skip
    runs = [legacy_run(imp), legacy_run(short)]
    ImportRun.objects.filter(pk=runs[1].pk).update(error_message="the key is e")
    first = hide_run_secrets()
    assert "2 looked at, 2 changed" in first
    once = [texts(run) for run in runs]
    assert once[1][0] == "th[hidden] k[hidden]y is [hidden]"

    # When it runs again
    again = hide_run_secrets()

    # Then it changed nothing
    assert "2 looked at, 0 changed" in again
    assert [texts(run) for run in runs] == once


def test_without_an_encryption_key_the_command_says_so_and_changes_nothing(alice, settings):
    # Given an old run, and no encryption key configured
    legacy = legacy_run(make_import(alice, SOURCE, credential=CREDENTIAL))
    settings.IMPORTBEAT_ENCRYPTION_KEYS = []

    # When the command runs
    with pytest.raises(CommandError) as refused:
        hide_run_secrets()

    # Then it says why in plain words, and the run is as it was
    assert str(refused.value) == saved_secrets.NO_KEY
    assert str(refused.value).startswith("no encryption key is configured")
    assert texts(legacy) == legacy_texts()


def test_runs_of_a_credential_no_key_opens_are_left_and_named(alice, settings):
    # Given an old run of an import whose credential was encrypted with a key since removed
    imp = make_import(alice, SOURCE, credential=CREDENTIAL)
    legacy = legacy_run(imp)
    settings.IMPORTBEAT_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    other = credentials.encrypt(CREDENTIAL)
    settings.IMPORTBEAT_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    ScheduledImport.objects.filter(pk=imp.pk).update(credential_secret=other)

    # When the command runs
    said = hide_run_secrets()

    # Then the run is as it was, and the output names its import
    assert texts(legacy) == legacy_texts()
    assert f"whose credential no configured key opens (import {imp.pk})" in said
