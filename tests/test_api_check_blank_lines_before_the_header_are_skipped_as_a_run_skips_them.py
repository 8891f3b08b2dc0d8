"""Test source and `POST /imports/check` skip blank lines before the header, as a run does
(engine hunt, found while fixing it).

Regression: the check took the first blank line for the header: it said "the key column 'sku'
is not in the file's columns ()" and showed the header as the first row, while a run of the
same file read it.
"""

import pytest

from tasks.source_check import inspect_source
from tests.factories import make_import
from tests.importer_support import run_now

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("before", ["\n\n", "\r\n\r\n", "\r\r", "\ufeff\n"])
def test_the_check_reads_the_header_after_blank_lines(alice, csv_server, before):
    body = f'{before}sku,name\r\nA-1,"Anvil\nlarge"\nB-2,Bucket\n'.encode()
    imp = make_import(alice, csv_server.serve("/p.csv", body))

    answer = inspect_source(imp)

    assert answer["problems"] == []
    assert (answer["columns"], answer["key_column_found"]) == (["sku", "name"], True)
    assert answer["rows"] == [["A-1", "Anvil\nlarge"], ["B-2", "Bucket"]]
    assert run_now(imp).status == "succeeded"


def test_a_headerless_file_shows_its_first_rows(alice, csv_server):
    imp = make_import(
        alice,
        csv_server.serve("/p.csv", b"\n\nA-1,Anvil\nB-2,Bucket\n"),
        has_header=False,
        key_column="column_1",
    )

    answer = inspect_source(imp)

    assert answer["problems"] == []
    assert answer["rows"] == [["A-1", "Anvil"], ["B-2", "Bucket"]]
