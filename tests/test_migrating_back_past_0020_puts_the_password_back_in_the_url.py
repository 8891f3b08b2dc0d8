"""Migrating back past 0020 puts the password it moved out of a source URL back into the URL.

Bug (upgrade hunt): 0020 takes `https://user:secret@host/file.csv` apart into the URL without
its password and an encrypted basic credential, and its reverse was `RunPython.noop`; 0017's
reverse then dropped the credential columns. `migrate schedules 0007` said OK on ccbc217's
data, and alice's import, which had succeeded before the upgrade, failed with HTTP 401 on that
release: the password was gone from the database.

This test migrates the test database back to 0019 and forward again (about 10 s); it
leaves it at the latest migration whatever happens."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from schedules import credentials
from schedules.models import ScheduledImport
from tests.factories import make_import

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("encryption_key")]

SOURCE = "https://files.example.com/p.csv"
WITH_PASSWORD = "https://alice:s3cret%2Fpass@files.example.com/p.csv"
BEFORE_0020 = ("schedules", "0019_attention_indexes")
AT_0020 = ("schedules", "0020_url_passwords_into_credentials")


def migrate(target: tuple[str, str]) -> None:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate([target])


def saved(import_id: int) -> tuple[str, str, bool]:
    """(source_url, credential_kind, a secret saved) as the schema at hand keeps them."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT source_url, credential_kind, credential_secret <> ''"
            " FROM schedules_scheduledimport WHERE id = %s",
            [import_id],
        )
        return cursor.fetchone()


def test_migrating_back_before_0020_puts_the_password_back_in_the_url(alice):
    imp = make_import(alice, SOURCE)
    try:
        # Given alice's import saved by a release before 0020, its password in its URL
        migrate(BEFORE_0020)
        with connection.cursor() as cursor:
            cursor.execute(
                "UPDATE schedules_scheduledimport SET source_url = %s WHERE id = %s",
                [WITH_PASSWORD, imp.pk],
            )
        # ... moved into a basic credential by 0020
        migrate(AT_0020)
        assert saved(imp.pk) == (SOURCE, "basic", True)

        # When the operator migrates back to the release before 0020
        migrate(BEFORE_0020)

        # Then that release reads the URL it fetched with, password included, and no credential
        assert saved(imp.pk) == (WITH_PASSWORD, "", False)
        # ... and 0020 run again moves it as the first time
        migrate(AT_0020)
        assert saved(imp.pk) == (SOURCE, "basic", True)
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes("schedules"))
    moved = ScheduledImport.objects.get(pk=imp.pk)
    assert moved.credential == {
        "kind": "basic", "set": True, "origin": "https://files.example.com:443"
    }  # fmt: skip
    assert credentials.decrypt(moved.credential_secret) == {
        "kind": "basic", "username": "alice", "password": "s3cret/pass"
    }  # fmt: skip
