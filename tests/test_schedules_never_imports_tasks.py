"""STYLE rule 15: `schedules` never imports `tasks`, directly or through another module, not
even inside a function: it sends tasks by name. import-linter checks the contract written in
pyproject.toml ([tool.importlinter]) on the source itself, so `make test` fails on the first
such import with the chain that makes it."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# `lint-imports` (requirements-dev.txt), run by this interpreter whatever the script's path.
LINT_IMPORTS = "from importlinter.cli import lint_imports_command; lint_imports_command()"


def test_no_module_of_schedules_imports_tasks():
    # When import-linter reads every module of the project, function-level imports included
    checked = subprocess.run(
        [sys.executable, "-c", LINT_IMPORTS, "--no-cache"],
        cwd=ROOT,
        env={**os.environ, "NO_COLOR": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )

    # Then the contract is there and kept; else the report names each import that breaks it
    report = checked.stdout + checked.stderr
    assert checked.returncode == 0, report
    assert "schedules must not import tasks KEPT" in report, report
