"""Every bench under tests/bench loads, and what it names of the product still exists.

`make bench` is run now and then, not by CI: a bench rots unseen between two runs. This guard
is the cheap part of keeping them alive (well under a second, no process): each bench module
imports (a name it imports from the product was renamed or removed), has a `bench_*` function
for `make bench` to run, reads from the product's modules only attributes they have
(`services.delete_runs`, `maintenance.DELETE_BATCH`: a rename shows only when the bench runs),
and builds the product's models with fields they have (`ScheduledImport(notify_on=...)`).

What it cannot see is a change of behaviour under a bench (a column's default, a module loaded
later): the benches wait for their work with tests/bench/deliveries.py and the like, which fail
at once saying why, and README "Benchmarks" gives the small knobs that run them all in minutes.
"""

from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path
from types import ModuleType

import pytest
from django.db import models

BENCH_DIR = Path(__file__).parent / "bench"
PRODUCT = ("schedules", "tasks", "common", "project")
BENCHES = sorted(path.stem for path in BENCH_DIR.glob("bench_*.py"))


def product_module(value: object) -> bool:
    return isinstance(value, ModuleType) and value.__name__.split(".")[0] in PRODUCT


def product_model(value: object) -> bool:
    return (
        inspect.isclass(value)
        and issubclass(value, models.Model)
        and value.__module__.split(".")[0] in PRODUCT
    )


def field_names(model: type[models.Model]) -> set[str]:
    names = {"pk"}
    for field in model._meta.get_fields():
        names.add(field.name)
        if attname := getattr(field, "attname", None):
            names.add(attname)
    # Properties with a setter (ScheduledImport.credential) are taken by the constructor too.
    names |= {name for name, value in vars(model).items() if isinstance(value, property)}
    return names


def what_it_names(module: ModuleType) -> list[str]:
    """`module.attr` reads of product modules that have no such attribute, and product models
    built with a keyword that is none of their fields: each as `line: what`."""
    tree = ast.parse(inspect.getsource(module))
    missing = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            target = vars(module).get(node.value.id)
            if product_module(target) and not hasattr(target, node.attr):
                missing.append(f"{node.lineno}: {node.value.id}.{node.attr}")
        if isinstance(node, ast.Call):
            model = None
            if isinstance(node.func, ast.Name):
                model = vars(module).get(node.func.id)
            elif (
                isinstance(node.func, ast.Attribute)
                and node.func.attr == "create"
                and isinstance(node.func.value, ast.Attribute)
                and node.func.value.attr == "objects"
                and isinstance(node.func.value.value, ast.Name)
            ):
                model = vars(module).get(node.func.value.value.id)
            if not product_model(model):
                continue
            known = field_names(model)
            missing += [
                f"{node.lineno}: {model.__name__}({keyword.arg}=...)"
                for keyword in node.keywords
                if keyword.arg is not None and keyword.arg not in known
            ]
    return missing


def test_there_are_benches_to_check():
    # Given the benches of tests/bench, then they are found (a moved folder would pass silently)
    assert len(BENCHES) >= 20, BENCHES


@pytest.mark.parametrize("name", BENCHES)
def test_a_bench_loads_and_names_only_what_the_product_has(name):
    # Given a bench module of tests/bench
    # When it is imported (as `make bench` collects it)
    module = importlib.import_module(f"tests.bench.{name}")

    # Then it has a bench for `make bench` to run
    assert [n for n, v in vars(module).items() if n.startswith("bench_") and callable(v)], name
    # And every attribute it reads of the product's modules, and every field it gives the
    # product's models, exists
    assert what_it_names(module) == [], name
