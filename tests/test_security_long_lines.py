"""A line, row or field longer than MAX_FIELD_BYTES fails the run, on both staging paths,
before the importer holds it (issue 11, point 2).

Regression: a file whose bad row sent it to the Python fallback and then carried a 200 MB
field drove a pool process to 1.5 GB RSS; the csv module held the whole line and field.
"""

import tracemalloc

import pytest

from tests.factories import make_import
from tests.importer_support import both_paths, run_now, staging_path  # noqa: F401

pytestmark = pytest.mark.django_db

LIMIT = 1024 * 1024
HUGE = 24 * LIMIT


def run_traced(imp):
    """Run `imp` here and return (run, peak bytes Python allocated meanwhile)."""
    tracemalloc.start()
    try:
        run = run_now(imp)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return run, peak


@pytest.fixture(autouse=True)
def _limit(settings):
    settings.MAX_FIELD_BYTES = LIMIT


@both_paths
def test_a_line_without_end_fails_naming_the_limit_and_memory_stays_flat(alice, csv_server):
    # Given a file whose third line is a 24 MB field that never ends
    body = b"sku,name\nA-1,Anvil\nB-2," + b"x" * HUGE
    imp = make_import(alice, csv_server.serve("/long.csv", body))

    run, peak = run_traced(imp)

    assert run.status == "failed"
    assert "line 3 is longer than the 1048576-byte limit (MAX_FIELD_BYTES)" in run.error_message
    assert peak < 8 * LIMIT
    assert imp.dataset.records.count() == 0


@both_paths
def test_a_bad_row_then_a_huge_field_fails_with_flat_memory(alice, csv_server):
    # Given the attack of the issue: a row COPY rejects sends the file to the Python parser,
    # then a line carries a field far over the limit (the fast path's own check of each line
    # may see it first: the copy case; the python case parses it)
    body = b"sku,name\nA-1,Anvil\nbad-row\nB-2," + b"y" * HUGE + b"\nC-3,Crate\n"
    imp = make_import(alice, csv_server.serve("/long.csv", body))

    run, peak = run_traced(imp)

    assert run.status == "failed"
    assert "line 4 is longer than" in run.error_message
    assert peak < 8 * LIMIT


@both_paths
def test_a_quoted_field_over_many_short_lines_is_bounded_too(alice, csv_server):
    # Given a field of 2 MB made of short lines (each under the limit)
    field = b"z" * 1000 + b"\n"
    body = b'sku,name\nA-1,"' + field * 2048 + b'"\nB-2,Bucket\n'
    imp = make_import(alice, csv_server.serve("/long.csv", body))

    run = run_now(imp)

    assert run.status == "failed"
    assert "the row starting on line 2 is longer than" in run.error_message


@both_paths
def test_a_field_under_the_limit_still_imports(alice, csv_server):
    body = b"sku,name\nA-1," + b"w" * (LIMIT // 2) + b"\nB-2,Bucket\n"
    imp = make_import(alice, csv_server.serve("/long.csv", body))

    run = run_now(imp)

    assert run.status == "succeeded" and run.rows_inserted == 2


def test_a_header_longer_than_the_limit_is_refused(alice, csv_server):
    body = b"sku," + b"h" * (2 * LIMIT) + b"\nA-1,x\n"
    imp = make_import(alice, csv_server.serve("/long.csv", body))

    run = run_now(imp)

    assert run.status == "failed"
    assert "the first line is longer than the 1048576-byte limit" in run.error_message
