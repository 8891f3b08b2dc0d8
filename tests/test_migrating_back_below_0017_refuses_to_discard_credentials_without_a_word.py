"""Migrating back past 0020 or below 0017 refuses, in words, to lose a saved credential, unless
the operator allows it with IMPORTBEAT_ALLOW_CREDENTIAL_LOSS.

Bug (upgrade hunt): 0017's reverse dropped the credential columns and 0020's did nothing, each
saying OK: on ccbc217's data, upgraded and migrated back to 0007, the password 0020 had moved
out of a URL was gone, and the import failed with HTTP 401. The reverse functions are called
here on this schema's tables, which have the columns they read; the last test migrates the test
database back for real (about 10 s), and leaves it at the latest migration whatever happens."""

from __future__ import annotations

import importlib

import pytest
from django.apps import apps
from django.core.management.base import CommandError
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.db.migrations.recorder import MigrationRecorder

from schedules.models import ScheduledImport
from tests.factories import make_import

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("encryption_key")]

M0017 = importlib.import_module("schedules.migrations.0017_source_credentials_and_sftp_host_keys")
M0020 = importlib.import_module("schedules.migrations.0020_url_passwords_into_credentials")
BASIC = {"kind": "basic", "username": "alice", "password": "s3cret-pass"}


def stored(imp):
    return ScheduledImport.objects.values_list(
        "source_url", "credential_kind", "credential_secret"
    ).get(pk=imp.pk)


def test_0020_back_without_the_key_stops_naming_the_imports_and_what_to_do(alice, settings):
    # Given alice's import whose basic credential was saved with a key no longer configured
    imp = make_import(alice, "https://files.example.com/p.csv", credential=BASIC)
    before = stored(imp)
    settings.IMPORTBEAT_ENCRYPTION_KEYS = []

    # When migrate goes back past 0020
    with pytest.raises(CommandError) as refused:
        M0020.put_url_passwords_back(apps, None)

    # Then it stops, saying which import, why, and the two ways on; nothing is changed
    said = str(refused.value)
    assert f"#{imp.pk} 'products' (alice)" in said
    assert "no IMPORTBEAT_ENCRYPTION_KEY is configured" in said
    assert "IMPORTBEAT_ALLOW_CREDENTIAL_LOSS=1" in said
    assert "s3cret" not in said
    assert stored(imp) == before


def test_0020_back_allowed_to_lose_leaves_the_credential_it_cannot_read(
    alice, settings, monkeypatch
):
    # Given the same, the operator allowing the loss
    imp = make_import(alice, "https://files.example.com/p.csv", credential=BASIC)
    before = stored(imp)
    settings.IMPORTBEAT_ENCRYPTION_KEYS = []
    monkeypatch.setenv("IMPORTBEAT_ALLOW_CREDENTIAL_LOSS", "1")

    # When migrate goes back past 0020
    M0020.put_url_passwords_back(apps, None)

    # Then the credential stays as it is, for 0017's reverse to drop
    assert stored(imp) == before


def test_0017_back_with_a_credential_no_url_carries_stops_naming_it(alice, bob):
    # Given bob's import with a bearer token, and alice's with no credential
    token = make_import(
        bob, "https://api.example.com/q.csv", credential={"kind": "bearer", "token": "t0ken"}
    )
    make_import(alice, "https://files.example.com/p.csv")

    # When migrate goes back below 0017
    with pytest.raises(CommandError) as refused:
        M0017.refuse_to_discard_credentials(apps, None)

    # Then it stops, naming bob's import and its kind, and how to go on
    said = str(refused.value)
    assert f"1 import has one: #{token.pk} 'products' (bob, bearer)" in said
    assert "Migrate stopped with 0017 still applied" in said
    assert "IMPORTBEAT_ALLOW_CREDENTIAL_LOSS=1" in said
    assert "t0ken" not in said


def test_0017_back_goes_on_when_allowed_or_when_no_credential_is_saved(alice, monkeypatch):
    # Given no credential saved: nothing is lost, nothing is said
    make_import(alice, "https://files.example.com/p.csv")
    M0017.refuse_to_discard_credentials(apps, None)

    # Given one, and the operator allowing the loss: it goes on
    make_import(
        alice, "https://api.example.com/q.csv", name="q", dataset="q",
        credential={"kind": "header", "name": "X-Api-Key", "value": "k3y"},
    )  # fmt: skip
    monkeypatch.setenv("IMPORTBEAT_ALLOW_CREDENTIAL_LOSS", "1")
    M0017.refuse_to_discard_credentials(apps, None)

    # ... and a word that is no switch is refused, naming the variable
    monkeypatch.setenv("IMPORTBEAT_ALLOW_CREDENTIAL_LOSS", "please")
    with pytest.raises(CommandError, match="IMPORTBEAT_ALLOW_CREDENTIAL_LOSS='please'"):
        M0017.refuse_to_discard_credentials(apps, None)


@pytest.mark.django_db(transaction=True)
def test_migrate_back_below_0017_stops_at_0017_with_the_credential_kept(bob):
    # Given bob's import with a bearer token
    imp = make_import(
        bob, "https://api.example.com/q.csv", credential={"kind": "bearer", "token": "t0ken"}
    )
    try:
        # When the operator migrates back below 0017
        with pytest.raises(CommandError, match="back below 0017 drops the source credentials"):
            MigrationExecutor(connection).migrate(
                [("schedules", "0016_drop_folders_and_compressed_sources")]
            )

        # Then migrate stopped with 0017 applied, and bob's token still saved
        applied = MigrationRecorder(connection).applied_migrations()
        assert ("schedules", "0017_source_credentials_and_sftp_host_keys") in applied
        assert ("schedules", "0018_run_reads_indexes") not in applied
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT credential_kind, credential_secret <> ''"
                " FROM schedules_scheduledimport WHERE id = %s",
                [imp.pk],
            )
            assert cursor.fetchone() == ("bearer", True)
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes("schedules"))
