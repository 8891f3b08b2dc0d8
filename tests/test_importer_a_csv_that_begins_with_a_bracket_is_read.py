"""A CSV whose first field begins with "[" or "{" is read; only a file that is JSON is refused as
JSON (engine hunt).

Any file whose first non-blank byte was "{" or "[" was refused as "the file is not a CSV (it
looks like HTML, XML or JSON)", for good: bracketed column names (`[ID],[Name]`, as SQL Server
and Access tools write them) and a headerless file keyed by braced Windows GUIDs are CSV.
"""

import pytest

from tests.factories import make_import
from tests.importer_support import (  # noqa: F401
    both_paths,
    records,
    run_now,
    staging_path,
)

pytestmark = pytest.mark.django_db

GUID = "{3F2504E0-4F89-11D3-9A0C-0305E82C3301}"


@both_paths
def test_bracketed_column_names_are_read(alice, csv_server):
    body = "[sku],[name]\nA-1,Anvil\n"
    imp = make_import(alice, csv_server.serve("/p.csv", body), key_column="[sku]")

    run = run_now(imp)

    assert run.status == "succeeded", run.error_message
    assert records(imp) == {"A-1": {"[sku]": "A-1", "[name]": "Anvil"}}


@both_paths
def test_a_headerless_file_keyed_by_braced_guids_is_read(alice, csv_server):
    body = f"{GUID},Anvil\n"
    imp = make_import(
        alice, csv_server.serve("/p.csv", body), has_header=False, key_column="column_1"
    )

    run = run_now(imp)

    assert run.status == "succeeded", run.error_message
    assert list(records(imp)) == [GUID]


@pytest.mark.parametrize(
    "body",
    [
        '[{"sku": "A-1", "name": "Anvil"}]\n',
        '\n  [\n  {"sku": "A-1"},\n  {"sku": "B-2"}\n]\n',
        '{"sku": "A-1"}\n',
        "{}",
        '[["sku", "name"], ["A-1", "Anvil"]]',
        '["A-1", "B-2"]',
        "[1, 2, 3]\n",
    ],
    ids=["array-of-objects", "indented", "object", "empty-object", "arrays", "strings", "numbers"],
)
def test_a_json_file_is_still_refused_as_such(alice, csv_server, body):
    imp = make_import(alice, csv_server.serve("/p.csv", body))

    run = run_now(imp)

    assert run.status == "failed"
    assert "the file is not a CSV (it looks like HTML, XML or JSON)" in run.error_message
