"""Benchmark: the admin's lists at a year of history (issue 15, the run list at scale).

Run with `make bench`, or alone (README "Benchmark: the admin at a year of history"). It builds
the reads bench's history itself (10,000 imports of five users, then 1,000,000 finished runs
over a year: tests/bench/bench_reads.py) and, as a superuser in the bench's own process, shows
each admin page `BENCH_ADMIN_ROUNDS` times (3) two ways, round after round: with the list
settings of Django's own ModelAdmin (a date drill-down over the run's `queued_at`, the full
result count, Django's search across the run, its import and its owner, each row's checkbox
rendered through the form templates), and with importbeat's (schedules/admin_lists.py and
ImportRunAdmin.get_search_results). Printed per page and way: the median wall time and CPU time
per page in ms, the number of queries and the slowest query's time. Timings are printed, never
asserted.
"""

from __future__ import annotations

import os
import statistics
import time
import types

import pytest
from django.contrib import admin as django_admin
from django.core.paginator import Paginator
from django.db import connection
from django.test import Client, override_settings
from django.test.utils import CaptureQueriesContext

from schedules.models import Dataset, ImportRun, Record, ScheduledImport
from tests.bench import bench_reads as history

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(1800),
]

ROUNDS = int(os.environ.get("BENCH_ADMIN_ROUNDS", "3"))


def pages(one_import: int, one_run: int) -> list[str]:
    runs = "/admin/schedules/importrun/"
    imports = "/admin/schedules/scheduledimport/"
    return [
        runs,
        f"{runs}?status__exact=failed",
        f"{runs}?q=503",
        f"{runs}?q=products",
        f"{runs}?scheduled_import__id__exact={one_import}",
        f"{runs}?p=50",
        f"{runs}{one_run}/change/",
        imports,
        f"{imports}?q=import",
        f"{imports}{one_import}/change/",
        "/admin/schedules/record/",
    ]


def djangos_defaults(on: bool) -> None:
    """Give the registered admins Django's own list settings (on) or take them back (off).

    The ModelAdmins are registered where the admin is served (project/admin_apps.py, since
    4b2e57e), and this runs before the bench's first request: without the autodiscover, the
    run's admin was not registered yet (KeyError: ImportRun)."""
    django_admin.autodiscover()
    for model in (ImportRun, ScheduledImport, Dataset, Record):
        model_admin = django_admin.site._registry[model]
        names = ("paginator", "show_full_result_count", "action_checkbox", "get_search_results")
        names += ("date_hierarchy",) if model is ImportRun else ()
        for name in names:
            model_admin.__dict__.pop(name, None)
        if not on:
            continue
        model_admin.paginator = Paginator
        model_admin.show_full_result_count = True
        for name in ("action_checkbox", "get_search_results"):
            method = getattr(django_admin.ModelAdmin, name)
            setattr(model_admin, name, types.MethodType(method, model_admin))
        if model is ImportRun:
            model_admin.date_hierarchy = "queued_at"


def measure(client: Client, path: str) -> dict[str, float]:
    response = client.get(path)
    assert response.status_code == 200, (path, response.status_code)
    wall_started, cpu_started = time.perf_counter(), time.process_time()
    with CaptureQueriesContext(connection) as ctx:
        client.get(path)
    return {
        "wall": (time.perf_counter() - wall_started) * 1000,
        "cpu": (time.process_time() - cpu_started) * 1000,
        "queries": len(ctx.captured_queries),
        "slowest": max(float(q["time"]) for q in ctx.captured_queries) * 1000,
    }


@override_settings(DEBUG=False)
def bench_admin_lists_at_a_year_of_history() -> None:
    started = time.monotonic()
    import_ids, client = history.a_year_for_ops()
    one_import = import_ids[10]
    one_run = ImportRun.objects.filter(scheduled_import_id=one_import).order_by("-pk")[0].pk

    figures: dict[tuple[str, str], list[dict]] = {}
    try:
        for _ in range(ROUNDS):
            for way in ("Django's defaults", "importbeat"):
                djangos_defaults(way != "importbeat")
                for path in pages(one_import, one_run):
                    figures.setdefault((path, way), []).append(measure(client, path))
    finally:
        djangos_defaults(False)

    print(f"\n=== admin pages, {history.RUNS:,} runs, {history.IMPORTS:,} imports, median of "
          f"{ROUNDS}: wall ms / CPU ms / queries / slowest query ms")  # fmt: skip
    print(f"{'page':58} | {'Django defaults':>26} | {'importbeat':>26}")
    for path in pages(one_import, one_run):
        cells = []
        for way in ("Django's defaults", "importbeat"):
            rounds = figures[(path, way)]
            median = {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}
            cells.append(
                f"{median['wall']:7.1f} {median['cpu']:6.1f} {median['queries']:3.0f} "
                f"{median['slowest']:7.1f}"
            )
        print(f"{path:58} | {cells[0]:>26} | {cells[1]:>26}")
    print(f"(bench total {time.monotonic() - started:.0f}s)")
