"""STYLE rule 14: ruff's checks and formatting hold on every file, so `make test` (and CI) fails
on a line `make lint` would refuse. Pinned regression: a long docstring line of the reads bench
landed on main because only `make lint` ran ruff."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("command", [["check", "."], ["format", "--check", "."]])
def test_ruff_finds_nothing_to_say(command):
    # When ruff (requirements-dev.txt) reads the whole checkout with pyproject.toml's settings
    checked = subprocess.run(
        [sys.executable, "-m", "ruff", *command, "--no-cache"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )

    # Then it has nothing to report; else the report names each file and line
    assert checked.returncode == 0, checked.stdout + checked.stderr
