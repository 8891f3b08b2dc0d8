"""Runs as they were saved before the runner hid the credential in them, and a data migration run
again on the rows a test made (then the schema back at its latest)."""

from __future__ import annotations

import base64
from typing import Any

from django.db import connection
from django.db.migrations.executor import MigrationExecutor

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
    """Migration `app`.`name` forwards again, on the rows as the test left them; then the
    schema is at its latest again, for the tests that follow on this database."""
    executor = MigrationExecutor(connection)
    graph = executor.loader.graph
    before = next(node.key for node in graph.node_map[(app, name)].parents if node.key[0] == app)
    try:
        executor.migrate([before])
    finally:
        for target in ((app, name), *graph.leaf_nodes(app)):
            executor = MigrationExecutor(connection)
            executor.loader.build_graph()
            executor.migrate([target])
