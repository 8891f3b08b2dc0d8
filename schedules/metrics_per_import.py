"""The families of `/metrics` with a series per import, written as Prometheus text.

`importbeat_runs_total`, `importbeat_rows_total`, `importbeat_run_duration_seconds` and
`importbeat_import_consecutive_failures` (with `importbeat_import_last_success_timestamp_seconds`)
hold some 25 lines per import. At 10,000 imports that
is 240,000 lines and 24 MB a scrape, which took 16 to 19 s through model instances and
prometheus_client's samples (10 s of CPU): past Prometheus's default scrape timeout of 10 s, so
every scrape failed and every alert on these figures went silent, while a web worker stayed
busy for each one. Here they are read as values in two statements written once and each line
is written once, the import's labels escaped once for all of its lines: the same text as
prometheus_client writes (tests/test_metrics_at_ten_thousand_imports.py keeps its writer and
compares).
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import cache

from django.contrib.auth import get_user_model
from django.db import connection
from prometheus_client.utils import floatToGoString as _go

from . import rows
from .models import RunTally, ScheduledImport
from .stats import TIMED_STATUSES

ROW_KINDS = ("read", "inserted", "updated", "unchanged", "deleted", "failed")
BOUNDS = [str(ms / 1000) for ms in RunTally.DURATION_BOUNDS_MS] + ["+Inf"]
# Rows fetched at a time: the text of 10,000 imports is written while they are read.
BATCH = 2000

RUNS = "importbeat_runs_total"
ROWS = "importbeat_rows_total"
DURATION = "importbeat_run_duration_seconds"
FAILURES = "importbeat_import_consecutive_failures"
LAST_SUCCESS = "importbeat_import_last_success_timestamp_seconds"
HEADERS = {
    RUNS: ("Runs that ended, by import and final status.", "counter"),
    ROWS: ("Rows of the runs that ended, by import and kind.", "counter"),
    DURATION: ("Duration of the runs that ended, by import.", "histogram"),
    FAILURES: (
        "Failed or timed-out runs in a row of each import that is not cancelled.",
        "gauge",
    ),
    LAST_SUCCESS: (
        "When the last succeeded run of each import that is not cancelled ended (Unix time;"
        " absent before its first).",
        "gauge",
    ),
}


def text() -> str:
    """The five families, each whole, in Prometheus's text format."""
    runs, counted, failures = [_header(RUNS)], [], [_header(FAILURES)]
    successes = [_header(LAST_SUCCESS)]
    for labels, tallies in _tallies():
        head, owner = labels
        totals = [0] * (len(ROW_KINDS) + 2)
        buckets = [0] * len(BOUNDS)
        for status, *figures, duration_buckets in tallies:
            runs.append(f'{RUNS}{{{head},{owner},status="{_escaped(status)}"}} {_go(figures[0])}\n')
            timed = status in TIMED_STATUSES
            # The durations of the runs that did work only, as the stats say: a skipped run's
            # 0 ms counted, twenty skipped ticks of a two-hour import put its p95 under 0.1 s
            # and the README's SlowImports alert never fired.
            added = figures[1:] if timed else [*figures[1:-2], 0, 0]
            totals = [a + b for a, b in zip(totals, added, strict=True)]
            if duration_buckets and timed:
                buckets = [a + b for a, b in zip(buckets, duration_buckets, strict=True)]
        counted.append((labels, totals, buckets))
    for imp_id, name, username, streak, last_success in _streaks():
        head, owner = _labels(imp_id, name, username)
        failures.append(f"{FAILURES}{{{head},{owner}}} {_go(streak)}\n")
        if last_success is not None:
            at = _go(last_success.timestamp())
            successes.append(f"{LAST_SUCCESS}{{{head},{owner}}} {at}\n")
    return "".join(runs + _rows(counted) + _durations(counted) + failures + successes)


def _rows(counted: list[tuple]) -> list[str]:
    lines = [_header(ROWS)]
    for (head, owner), totals, _ in counted:
        for kind, value in zip(ROW_KINDS, totals, strict=False):
            lines.append(f'{ROWS}{{{head},kind="{kind}",{owner}}} {_go(value)}\n')
    return lines


def _durations(counted: list[tuple]) -> list[str]:
    lines = [_header(DURATION)]
    for (head, owner), totals, buckets in counted:
        cumulative = 0
        for bound, count in zip(BOUNDS, buckets, strict=True):
            cumulative += count
            lines.append(f'{DURATION}_bucket{{{head},le="{bound}",{owner}}} {_go(cumulative)}\n')
        lines.append(f"{DURATION}_count{{{head},{owner}}} {_go(cumulative)}\n")
        lines.append(f"{DURATION}_sum{{{head},{owner}}} {_go(totals[-1] / 1000)}\n")
    return lines


def _tallies() -> Iterator[tuple[tuple[str, str], list[tuple]]]:
    """Each import's labels and its tallies (status, runs, the six row counts, the count and
    the sum of its durations, its duration buckets), in the order of its id."""
    labels, tallies, current = None, [], None
    for imp_id, name, username, *tally in _fetch(_tallies_sql()):
        if imp_id != current:
            if labels is not None:
                yield labels, tallies
            labels, tallies, current = _labels(imp_id, name, username), [], imp_id
        tallies.append(tally)
    if labels is not None:
        yield labels, tallies


def _streaks() -> Iterator[tuple]:
    return _fetch(_streaks_sql())


def _fetch(statement: str) -> Iterator[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(statement)
        while batch := cursor.fetchmany(BATCH):
            yield from batch


def _labels(imp_id: int, name: str, username: str) -> tuple[str, str]:
    # Label names in the order prometheus_client sorts them: import, import_id, (kind, le),
    # owner, (status).
    return f'import="{_escaped(name)}",import_id="{imp_id}"', f'owner="{_escaped(username)}"'


def _escaped(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _header(name: str) -> str:
    documentation, kind = HEADERS[name]
    return f"# HELP {name} {documentation}\n# TYPE {name} {kind}\n"


@cache
def _tallies_sql() -> str:
    quote = connection.ops.quote_name
    user_model = get_user_model()
    figures = ", ".join(
        f"t.{quote(name)}"
        for name in (
            "status", "runs", *(f"rows_{kind}" for kind in ROW_KINDS),
            "duration_count", "duration_ms_sum", "duration_buckets",
        )
    )  # fmt: skip
    tally = quote("scheduled_import_id")
    return (
        f"SELECT i.id, i.{quote('name')}, u.{rows.column(user_model, user_model.USERNAME_FIELD)},"
        f" {figures} FROM {quote(RunTally._meta.db_table)} t"
        f" JOIN {quote(ScheduledImport._meta.db_table)} i ON i.id = t.{tally}"
        f" JOIN {quote(user_model._meta.db_table)} u ON u.id = i.{quote('owner_id')}"
        f" ORDER BY i.id, t.{quote('status')}"
    )


@cache
def _streaks_sql() -> str:
    quote = connection.ops.quote_name
    user_model = get_user_model()
    cancelled = rows.literals([ScheduledImport.Status.CANCELLED])
    return (
        f"SELECT i.id, i.{quote('name')}, u.{rows.column(user_model, user_model.USERNAME_FIELD)},"
        f" i.{quote('consecutive_failures')}, i.{quote('last_success_at')}"
        f" FROM {quote(ScheduledImport._meta.db_table)} i"
        f" JOIN {quote(user_model._meta.db_table)} u ON u.id = i.{quote('owner_id')}"
        f" WHERE i.{quote('status')} <> {cancelled} ORDER BY i.id"
    )
