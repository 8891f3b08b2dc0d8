"""Helpers for the importer's tests: run an import in-process, on either staging path."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

import pytest
from django.db import connections

from schedules.models import ImportRun, Record
from tasks import runner
from tasks.engine import stage_copy


def run_now(imp) -> ImportRun:
    """One manual run of `imp`, executed here (no worker), reloaded from the database."""
    run = ImportRun.objects.create(scheduled_import=imp, trigger=ImportRun.Trigger.MANUAL)
    runner.execute(run.pk)
    run.refresh_from_db()
    return run


T = TypeVar("T")


def from_another_connection(read: Callable[[], T]) -> T:
    """`read()` on a thread of its own, so on a database connection of its own: what the
    dashboard, the API or another worker sees while a run holds this thread."""
    thread, seen = on_a_thread(read)
    thread.join()
    return seen[0]


def on_a_thread(call: Callable[[], T]) -> tuple[threading.Thread, list[T]]:
    """Start `call()` on a thread of its own (a database connection of its own: a request
    or an edit from elsewhere); the thread, and the list its answer lands in."""
    answers: list[T] = []

    def target() -> None:
        try:
            answers.append(call())
        finally:
            connections.close_all()

    thread = threading.Thread(target=target)
    thread.start()
    return thread, answers


def records(imp) -> dict[str, dict]:
    return {r.key: r.data for r in Record.objects.filter(dataset=imp.dataset)}


def row_errors(run: ImportRun) -> list[tuple[int, str | None, str]]:
    return [(e["line"], e["column"], e["reason"]) for e in run.error_details.get("rows", [])]


@pytest.fixture(params=["copy", "python"])
def staging_path(request, monkeypatch) -> str:
    """Run the test on the COPY fast path and again on the Python fallback."""
    if request.param == "python":
        monkeypatch.setattr(stage_copy, "fast_path_refusal", lambda imp, first: "forced")
    return request.param


# Marks a test to run on both staging paths (the fixture is imported by the test module).
both_paths = pytest.mark.usefixtures("staging_path")
