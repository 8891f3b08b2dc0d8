"""What the Makefile's recipes import from the project exists. `make pgtest` asked
`project.devservices.database_answers` whether the system PostgreSQL answers; renamed
(`database_problem`), the import failed, the recipe took the failure for "no PostgreSQL
answers", and CI ran the hand-written SQL's tests on one server only, saying nothing else."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

MAKEFILE = Path(__file__).resolve().parent.parent / "Makefile"
IMPORTS = re.compile(r"from ((?:project|schedules|tasks|common)(?:\.\w+)*) import ([\w, ]+)")


def test_every_name_a_recipe_imports_from_the_project_exists():
    # Given the names the Makefile's recipes import from the project's modules
    found = IMPORTS.findall(MAKEFILE.read_text())
    assert found  # (pgtest's check of the system PostgreSQL, at least)

    # Then each module has each name
    missing = [
        f"{module}.{name.strip()}"
        for module, names in found
        for name in names.split(",")
        if not hasattr(importlib.import_module(module), name.strip())
    ]
    assert missing == []
