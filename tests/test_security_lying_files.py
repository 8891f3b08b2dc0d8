"""Files that lie about their shape are refused with a permanent error that says what is
wrong (issue 11, point 5).

Regressions: a header `id,id` stored a record keyed `1` whose data said `{"id": "2"}`; more
than PostgreSQL's 1,600 columns was retried as a transient failure; `base64`, `rot13` and
`hex` were accepted as a file's encoding.
"""

import pytest
from django.core.exceptions import ValidationError

from schedules.models import ImportRun
from tasks import runner
from tests.api_support import API, client_for, import_body
from tests.bound_task import BoundTask as FakeTask
from tests.factories import make_import
from tests.importer_support import both_paths, records, run_now, staging_path  # noqa: F401

pytestmark = pytest.mark.django_db


def run_on_a_worker(imp) -> ImportRun:
    """A run as a worker executes it: a transient failure would be `retrying`."""
    run = ImportRun.objects.create(scheduled_import=imp, trigger=ImportRun.Trigger.MANUAL)
    runner.execute(run.pk, task=FakeTask())
    run.refresh_from_db()
    return run


@both_paths
def test_a_repeated_column_name_fails_naming_it(alice, csv_server):
    imp = make_import(alice, csv_server.serve("/p.csv", "id,id\n1,2\n"), key_column="id")

    run = run_on_a_worker(imp)

    assert run.status == "failed"
    assert "the header repeats 'id' (columns 1, 2)" in run.error_message
    assert records(imp) == {}


def test_an_empty_column_name_fails_naming_its_position(alice, csv_server):
    imp = make_import(alice, csv_server.serve("/p.csv", "sku,,name, \nA-1,x,y,z\n"))

    run = run_on_a_worker(imp)

    assert run.status == "failed"
    assert "has no name for columns 2, 4" in run.error_message


@both_paths
def test_a_columns_spec_that_names_every_column_stands_in_for_a_lying_header(alice, csv_server):
    columns = [{"name": "id", "type": "int"}, {"name": "other_id", "type": "int"}]
    imp = make_import(
        alice, csv_server.serve("/p.csv", "id,id\n1,2\n"), key_column="id", columns=columns
    )

    run = run_now(imp)

    assert run.status == "succeeded"
    assert records(imp) == {"1": {"id": 1, "other_id": 2}}


def test_more_columns_than_postgresql_allows_is_permanent_and_names_the_limit(alice, csv_server):
    header = ",".join(["sku", *(f"c{i}" for i in range(1700))])
    row = ",".join(["A-1", *("x" for _ in range(1700))])
    imp = make_import(alice, csv_server.serve("/wide.csv", f"{header}\n{row}\n"))

    run = run_on_a_worker(imp)

    assert run.status == "failed" and run.attempts == 1
    assert "the file has 1701 columns; an import takes at most 1595" in run.error_message
    assert "1600 columns a table" in run.error_message


def test_the_widest_file_allowed_still_imports_and_its_changes_merge(alice, csv_server):
    # At 1,596 columns a file loaded once, and each later run that changed a row failed as
    # "the run lost its connection to importbeat's database" (the merge's read of staging
    # adds a column: 1,601)
    from tasks.engine.first_record import MAX_FILE_COLUMNS

    others = MAX_FILE_COLUMNS - 1
    header = ",".join(["sku", *(f"c{i}" for i in range(others))])
    row = ",".join(["A-1", *(str(i) for i in range(others))])
    imp = make_import(alice, csv_server.serve("/wide.csv", f"{header}\n{row}\n"))

    run = run_now(imp)

    assert run.status == "succeeded", run.error_message
    assert records(imp)["A-1"][f"c{others - 1}"] == str(others - 1)
    changed = row.replace("A-1", "B-2")
    csv_server.serve("/wide.csv", f"{header}\n{row}\n{changed}\n")
    again = run_now(imp)
    assert (again.status, again.rows_inserted) == ("succeeded", 1), again.error_message


@pytest.mark.parametrize("encoding", ["base64", "rot13", "hex", "zlib"])
def test_a_codec_that_is_not_a_text_encoding_is_refused_when_saved(alice, encoding):
    with pytest.raises(ValidationError) as refused:
        make_import(alice, "https://example.com/p.csv", encoding=encoding)
    assert "is not a text encoding" in str(refused.value.message_dict["encoding"])

    response = client_for(alice).post(f"{API}/imports/", import_body(encoding=encoding))
    assert response.status_code == 400
    assert "is not a text encoding" in response.json()["errors"]["encoding"][0]


def test_an_import_saved_with_such_an_encoding_earlier_fails_permanently(alice, csv_server):
    imp = make_import(alice, csv_server.serve("/p.csv", "sku\nA-1\n"))
    type(imp).objects.filter(pk=imp.pk).update(encoding="rot13")

    run = run_on_a_worker(imp)

    assert run.status == "failed"
    assert "'rot13' is not a text encoding" in run.error_message


def test_a_row_too_wide_for_staging_is_said_as_such(alice, csv_server):
    # 500 columns of 30 bytes: past PostgreSQL's 8,160 bytes a row in staging. The run said "a
    # value of the file is beyond what importbeat's database can hold (a field or a row ...)"
    header = ",".join(["sku", *(f"c{i}" for i in range(499))])
    row = ",".join(["A-1", *("x" * 30 for _ in range(499))])
    imp = make_import(alice, csv_server.serve("/wide.csv", f"{header}\n{row}\n"))

    run = run_now(imp)

    assert run.status == "failed"
    assert run.error_message.startswith("a row of the file is too large for importbeat's staging")
    assert "a file this wide takes shorter values, or fewer columns" in run.error_message
