"""STYLE rule 15: imports run one way, down the data flow, so no two modules import each other.

import-linter checks the contracts written in pyproject.toml ([tool.importlinter]) on the source
itself, function-level imports included: a package imports only the layers below it (project,
tasks, schedules, common), and no two modules of a package import each other. `make lint` and
`make test` fail on the first import that breaks them, naming the chain that makes it. The
contracts are also tried on a copy of the code with one back-edge added, so that a contract
that stopped seeing anything (a package left out, a layer misnamed) fails here too."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ["project", "tasks", "schedules", "common"]
LAYERS = "packages import down the layers: project, tasks, schedules, common KEPT"
ACYCLIC = "no two modules of a package import each other KEPT"
# `lint-imports` (requirements-dev.txt), run by this interpreter whatever the script's path.
LINT_IMPORTS = "from importlinter.cli import lint_imports_command; lint_imports_command()"


def lint_imports(where: Path) -> tuple[int, str]:
    """import-linter's verdict on the packages under `where` (found there, first on sys.path)."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    checked = subprocess.run(
        [sys.executable, "-c", LINT_IMPORTS, "--no-cache"],
        cwd=where,
        env={**env, "NO_COLOR": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    return checked.returncode, checked.stdout + checked.stderr


def test_every_import_runs_down_the_layers_and_no_two_modules_import_each_other():
    # When import-linter reads every module of the project
    returncode, report = lint_imports(ROOT)

    # Then both contracts are there and kept; else the report names each import that breaks one
    assert returncode == 0, report
    assert LAYERS in report, report
    assert ACYCLIC in report, report


BACK_EDGES = {
    # A package importing a layer above it, at module level ...
    "schedules imports the entry points": ("schedules/text.py", "from project import urls", LAYERS),
    "common imports schedules": ("common/security.py", "from schedules import models", LAYERS),
    # ... or inside a function, the way a cycle hides from Python's own import errors.
    "schedules imports tasks in a function": (
        "schedules/services.py",
        "def back_edge():\n    from tasks import runner",
        LAYERS,
    ),
    # Two modules of one package importing each other.
    "a module imports its importer": ("tasks/byte_stream.py", "from . import fetch", ACYCLIC),
}


@pytest.mark.parametrize("edge", BACK_EDGES.values(), ids=BACK_EDGES.keys())
def test_one_back_edge_breaks_a_contract(tmp_path, edge):
    # Given a copy of the code and its contracts, with one import against the flow
    module, line, contract = edge
    for package in PACKAGES:
        shutil.copytree(
            ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    with open(tmp_path / module, "a") as source:
        source.write(f"\n\n{line}\n")

    # When import-linter reads it
    returncode, report = lint_imports(tmp_path)

    # Then that contract is broken, and the other still kept
    assert returncode != 0, report
    broken = contract.replace(" KEPT", " BROKEN")
    assert broken in report, report
    for other in {LAYERS, ACYCLIC} - {contract}:
        assert other in report, report
