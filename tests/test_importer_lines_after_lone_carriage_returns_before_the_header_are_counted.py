"""Blank lines of a lone carriage return before the header count as lines on both staging
paths (engine hunt).

Regression: the fast path counted the header's lines by its line feeds, so `\\r\\rsku,name\\r\\n`
put the header on line 1, and every row error of the file named a line two too early (3 for an
editor's 5); the Python path (the csv module) already said 5.
"""

import pytest

from tasks.engine.first_record import line_breaks
from tests.factories import make_import
from tests.importer_support import (  # noqa: F401
    both_paths,
    row_errors,
    run_now,
    staging_path,
)

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("data", "breaks"),
    [
        (b"", 0),
        (b"sku,name\n", 1),
        (b"sku,name\r\n", 1),
        (b"\r\rsku,name\r\n", 3),
        (b"\r\n\r\n\nsku,name\n", 4),
        (b'\r\n\r"sku\r\nid",name\r', 4),
    ],
)
def test_line_breaks_are_counted_as_an_editor_counts_lines(data, breaks):
    assert line_breaks(data) == breaks


@both_paths
@pytest.mark.parametrize(
    "before", ["\r\r", "\r\n\r", "\r\r\n", "\n\r\n\r"], ids=["cr-cr", "crlf-cr", "cr-crlf", "mixed"]
)
def test_a_bad_row_after_blank_lines_names_its_physical_line(alice, csv_server, before):
    # lines: 1 and 2 blank, 3 header, 4 A-1, 5 an empty key (the "mixed" case: 4 blank lines)
    body = f"{before}sku,name\r\nA-1,Anvil\r\n,orphan\r\n"
    blank = line_breaks(before.encode())
    imp = make_import(alice, csv_server.serve("/p.csv", body))

    run = run_now(imp)

    assert run.status == "partial"
    assert row_errors(run) == [(blank + 3, "sku", "the key is empty")]
