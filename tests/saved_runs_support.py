"""Runs as they were saved before the runner hid the credential in them, and a data migration run
again on the rows a test made (then the schema back at its latest)."""

from __future__ import annotations

import base64
from itertools import takewhile
from typing import Any

from django.db import connection, migrations, models
from django.db.migrations import Migration
from django.db.migrations.executor import MigrationExecutor
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.state import ProjectState, StateApps

from schedules.models import ImportRun, ScheduledImport
from schedules.services import ROW_VALUE_CHARS
from tests.echo_support import AWKWARD_TEXT, forms

# A basic credential: every form of its secret a source may repeat (tests.echo_support).
CREDENTIAL = {"kind": "basic", "username": "feed", "password": AWKWARD_TEXT}
PAIR = base64.b64encode(f"feed:{AWKWARD_TEXT}".encode()).decode()
RAW, QUOTED, PLUS, JSON_ESCAPED, JSON_UTF8 = forms(AWKWARD_TEXT)
# A bad row's value, cut at ROW_VALUE_CHARS inside the secret (its first 10 characters kept).
CUT_VALUE = "x" * (ROW_VALUE_CHARS - 10) + RAW[:10]
AT = "2026-11-30T10:00:00+00:00"


def legacy_texts() -> tuple[str, dict[str, Any]]:
    """A failed run's message and details as a source that echoes its credential left them, in
    each form: the basic pair as sent, the password raw, percent-encoded (both ways),
    JSON-escaped (both ways), and cut inside a row's value."""
    message = f"the server answered HTTP 503 Basic {PAIR}"
    return message, {
        "attempts": [
            {"attempt": 1, "error": f"cannot reach https://files.example.com/p.csv?k={QUOTED}",
             "at": AT, "retry_in": 30.0},
            {"attempt": 2, "error": message, "at": AT},
        ],
        "traceback": f'Traceback (most recent call last):\nValueError: {{"key": "{JSON_ESCAPED}"}}',
        "rows": [
            {"line": 2, "column": "key", "value": CUT_VALUE, "reason": "not a whole number"},
            {"line": 3, "column": "json", "value": JSON_UTF8, "reason": f"not a date: {PLUS}"},
            {"line": 4, "column": "raw", "value": RAW, "reason": "required"},
        ],
        "cancelled_by": "",
    }  # fmt: skip


def hidden_texts() -> tuple[str, dict[str, Any]]:
    """legacy_texts() as the runner writes them now: each secret `[hidden]`."""
    message = "the server answered HTTP 503 Basic [hidden]"
    return message, {
        "attempts": [
            {"attempt": 1, "error": "cannot reach https://files.example.com/p.csv?k=[hidden]",
             "at": AT, "retry_in": 30.0},
            {"attempt": 2, "error": message, "at": AT},
        ],
        "traceback": 'Traceback (most recent call last):\nValueError: {"key": "[hidden]"}',
        "rows": [
            {"line": 2, "column": "key", "value": "x" * (ROW_VALUE_CHARS - 10) + "[hidden]",
             "reason": "not a whole number"},
            {"line": 3, "column": "json", "value": "[hidden]", "reason": "not a date: [hidden]"},
            {"line": 4, "column": "raw", "value": "[hidden]", "reason": "required"},
        ],
        "cancelled_by": "",
    }  # fmt: skip


def legacy_run(imp: ScheduledImport, **fields: Any) -> ImportRun:
    """A failed run of `imp` saved with legacy_texts(), as it was before the runner hid them."""
    message, details = legacy_texts()
    return ImportRun.objects.create(
        scheduled_import=imp, trigger="schedule", status="failed", error_message=message,
        error_details=details, **fields,
    )  # fmt: skip


def texts(run: ImportRun) -> tuple[str, dict[str, Any]]:
    run.refresh_from_db()
    return run.error_message, run.error_details


def run_data_migration(app: str, name: str) -> None:
    """Migration `app`.`name` forwards again, on the rows as the test left them; the schema is
    at its latest after it, for the tests that follow on this database.

    A data migration (its operations RunPython and RunSQL, after AddFields if any) is run on
    its own, in the database as it is: each operation's database_forwards with the historical
    state it runs in when `migrate` runs it (`apps` as of that migration, the AddFields before
    it applied to that state), in one schema_editor, atomic as the migration is. An AddField is
    not run again, its column is there: what it did to the rows is, each row's value set to
    the field's default, as the column added to a table already full of rows has it.

    Sound because the migration finds exactly the rows a real `migrate` back and forth would
    give it, and the same code runs on them: this is refused (replayable()) unless every column
    of the historical models, and each column an AddField added, is still there with the same
    name and type in the latest schema, so no later migration moved, dropped or retyped what
    the function reads or writes. What the guard cannot see, a later migration giving a column
    another meaning, was read for the migrations the tests run (0020, 0021, 0024, 0030, 0037,
    0039): the ones after them, left applied, add tables, columns, indexes and database
    defaults (the rows their own data steps change are no matter: those steps are not run
    again, here or by a real migrate forwards). A test that runs another data migration
    reads its later migrations so again. And it is what makes these tests fast: migrating back
    to the parent unapplies every later migration, forwards applies them again (10-75 s a
    test); the migration alone takes well under a second.

    Anything else (a migration that alters, removes or renames, a column gone or retyped since)
    migrates back to the parent and forwards again, for real."""
    executor = MigrationExecutor(connection)
    migration = executor.loader.graph.nodes[(app, name)]
    state = state_before(executor.loader, app, name)
    if state is not None and replayable(migration, state, executor.loader.project_state()):
        replay(migration, state)
    else:
        migrate_back_and_forth(executor, app, name)


def state_before(loader: MigrationLoader, app: str, name: str) -> ProjectState | None:
    """The state `migrate` runs migration `app`.`name` in, back at its parent: every other app
    at its latest, `app` as its dependencies left it; None if another app's latest needs it."""
    graph = loader.graph
    others = [leaf for leaf in graph.leaf_nodes() if leaf[0] != app]
    if any((app, name) in graph.forwards_plan(leaf) for leaf in others):
        return None
    return loader.project_state(
        [*others, *(node.key for node in graph.node_map[(app, name)].parents)], at_end=True
    )


DATA_OPERATIONS = (migrations.RunPython, migrations.RunSQL)


def replayable(migration: Migration, state: ProjectState, latest: ProjectState) -> bool:
    """Whether `migration` only adds fields, then changes rows, in columns the latest schema
    still has as they were (run_data_migration)."""
    added = list(takewhile(lambda op: isinstance(op, migrations.AddField), migration.operations))
    data = migration.operations[len(added) :]
    if not data or not all(isinstance(operation, DATA_OPERATIONS) for operation in data):
        return False
    if any(operation.field.db_default is not models.NOT_PROVIDED for operation in added):
        return False  # its rows would have the database's default, not effective_default()
    after = state.clone()
    for operation in added:
        operation.state_forwards(migration.app_label, after)
    return columns(after.apps) <= columns(latest.apps)


def columns(apps: StateApps) -> set[tuple[str, str, str | None]]:
    """Every (table, column, type) of the models in `apps`."""
    return {
        (model._meta.db_table, field.column, field.db_type(connection))
        for model in apps.get_models()
        for field in model._meta.local_concrete_fields
    }


def replay(migration: Migration, state: ProjectState) -> None:
    """`migration` run as `migrate` runs it from `state`, its AddFields' columns already there
    (run_data_migration): each row gets the field's default, as the column added had it."""
    app = migration.app_label
    with connection.schema_editor(atomic=migration.atomic) as schema_editor:
        for operation in migration.operations:
            after = state.clone()
            operation.state_forwards(app, after)
            if isinstance(operation, migrations.AddField):
                model = after.apps.get_model(app, operation.model_name)
                field = model._meta.get_field(operation.name)
                model._base_manager.update(
                    **{field.attname: schema_editor.effective_default(field)}
                )
            else:
                operation.database_forwards(app, schema_editor, state, after)
            state = after


def migrate_back_and_forth(executor: MigrationExecutor, app: str, name: str) -> None:
    """The database migrated back to the parent of `app`.`name`, then forwards to the latest."""
    graph = executor.loader.graph
    before = next(node.key for node in graph.node_map[(app, name)].parents if node.key[0] == app)
    try:
        executor.migrate([before])
    finally:
        for target in ((app, name), *graph.leaf_nodes(app)):
            executor = MigrationExecutor(connection)
            executor.loader.build_graph()
            executor.migrate([target])
