"""Helpers for the importer's tests: run an import in-process, on either staging path."""

from __future__ import annotations

import pytest

from schedules.models import ImportRun, Record
from tasks import runner
from tasks.engine import stage_copy


def run_now(imp) -> ImportRun:
    """One manual run of `imp`, executed here (no worker), reloaded from the database."""
    run = ImportRun.objects.create(scheduled_import=imp, trigger=ImportRun.Trigger.MANUAL)
    runner.execute(run.pk)
    run.refresh_from_db()
    return run


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
