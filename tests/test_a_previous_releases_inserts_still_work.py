"""A row the previous release writes, naming only the columns it knew, is taken: every column
with a default has it in the database too (migration 0035, and each new one keeps to it).

In an upgrade the previous release's web and workers run on while `migrate` adds columns
(compose replaces them after its migrate service). A NOT NULL column whose default was Django's
alone refused their INSERTs: creating an import with a new dataset answered 500
(`record_count`, `key_column`), and the same for runs, deliveries and records."""

from __future__ import annotations

import pytest
from django.apps import apps
from django.db import connection
from django.db.models import NOT_PROVIDED

from schedules.models import Dataset, ImportRun, ScheduledImport
from tests.api_support import SOURCE
from tests.factories import make_import

pytestmark = pytest.mark.django_db

# Written by a trigger of the database's own (migration 0008), never by the application.
BY_THE_DATABASE = {"RunTally"}


def columns_without_a_database_default() -> list[str]:
    missing = []
    for model in apps.get_app_config("schedules").get_models():
        if model.__name__ in BY_THE_DATABASE:
            continue
        for field in model._meta.concrete_fields:
            if field.primary_key or field.null or field.is_relation:
                continue
            has_one = field.default is not NOT_PROVIDED or field.blank
            if has_one and field.db_default is NOT_PROVIDED:
                missing.append(f"{model.__name__}.{field.name}")
    return missing


def test_every_column_with_a_default_has_it_in_the_database():
    assert columns_without_a_database_default() == []


def test_rows_naming_only_the_columns_a_first_release_knew_are_taken(alice):
    imp = make_import(alice, SOURCE)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {Dataset._meta.db_table} (owner_id, name) VALUES (%s, 'older')"
            " RETURNING id",
            [alice.pk],
        )
        dataset_id = cursor.fetchone()[0]
        cursor.execute(
            f"INSERT INTO {ScheduledImport._meta.db_table} (owner_id, name, source_url,"
            " dataset_id, key_column, schedule_type, interval_seconds)"
            " VALUES (%s, 'older', %s, %s, 'sku', 'interval', 3600) RETURNING id",
            [alice.pk, SOURCE, dataset_id],
        )
        import_id = cursor.fetchone()[0]
        cursor.execute(
            f"INSERT INTO {ImportRun._meta.db_table} (scheduled_import_id, trigger)"
            " VALUES (%s, 'api') RETURNING id",
            [imp.pk],
        )
        run_id = cursor.fetchone()[0]

    older = ScheduledImport.objects.get(pk=import_id)
    assert (older.status, older.max_retries, older.notify_channels) == (
        "active", 3, ["email", "webhook"],
    )  # fmt: skip
    assert Dataset.objects.get(pk=dataset_id).record_count == 0
    run = ImportRun.objects.get(pk=run_id)
    assert (run.status, run.attempts, run.error_details, run.error_message) == ("queued", 0, {}, "")
