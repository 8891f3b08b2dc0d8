"""The COPY fast path and the csv module read every file alike: a file COPY would read
otherwise goes to the Python path (tasks/engine/stage_copy.CopyMisreads).

Before, the fast path imported fewer rows than the file held and called the run a success:
a quote inside a field that is not quoted (an inch mark, `5" screen`) made COPY join the rows
up to the next quote into one field, a stray quote in the header made it skip every row, and a
line that is only `\\.` (COPY's end-of-data marker) dropped every row after it. With
`mode: sync` the rows it lost were deleted from the dataset."""

from __future__ import annotations

import pytest

from tasks.engine import stage_copy
from tests.factories import make_import
from tests.importer_support import (  # noqa: F401
    both_paths,
    records,
    row_errors,
    run_now,
    staging_path,
)

pytestmark = pytest.mark.django_db

LOADED = "sku,desc,qty\nA,screen,10\nB,tablet,20\nC,plain,30\n"


def loaded_sync_import(alice, csv_server):
    imp = make_import(alice, csv_server.serve("/p.csv", LOADED), mode="sync")
    assert run_now(imp).rows_inserted == 3
    return imp


@both_paths
def test_inch_marks_inside_fields_are_kept_and_no_row_is_lost(alice, csv_server):
    # Given a sync import of three records, whose file now has inch marks in two fields
    imp = loaded_sync_import(alice, csv_server)
    csv_server.serve("/p.csv", 'sku,desc,qty\nA,5" screen,10\nB,7" tablet,20\nC,plain,30\n')

    # When it runs
    run = run_now(imp)

    # Then every row landed as written, and nothing was deleted
    assert (run.status, run.rows_read, run.rows_updated, run.rows_deleted) == (
        "succeeded", 3, 2, 0
    )  # fmt: skip
    assert records(imp) == {
        "A": {"sku": "A", "desc": '5" screen', "qty": "10"},
        "B": {"sku": "B", "desc": '7" tablet', "qty": "20"},
        "C": {"sku": "C", "desc": "plain", "qty": "30"},
    }


@both_paths
def test_a_pair_of_inch_marks_in_one_field_keeps_its_quotes(alice, csv_server):
    body = 'sku,desc,qty\nA,Monitor 24" x 15",10\nB,plain,20\n'
    imp = make_import(alice, csv_server.serve("/p.csv", body))

    run = run_now(imp)

    assert (run.status, run.rows_inserted) == ("succeeded", 2)
    assert records(imp)["A"]["desc"] == 'Monitor 24" x 15"'


@both_paths
def test_a_quote_in_the_header_does_not_swallow_the_rows(alice, csv_server):
    # Given a sync import of three records, whose header now names a column with an inch mark
    imp = loaded_sync_import(alice, csv_server)
    csv_server.serve("/p.csv", 'sku,size 15.6",qty\nA,1,2\nB,3,4\nC,5,6\n')

    run = run_now(imp)

    # Then the three rows are read under that name, and none deleted
    assert (run.status, run.rows_read, run.rows_deleted) == ("succeeded", 3, 0)
    assert records(imp)["B"] == {"sku": "B", 'size 15.6"': "3", "qty": "4"}


@both_paths
def test_a_line_of_backslash_dot_is_a_bad_row_and_the_rows_after_it_land(alice, csv_server):
    # Given a sync import of three records, whose file now has a `\.` line after the first
    imp = loaded_sync_import(alice, csv_server)
    csv_server.serve("/p.csv", "sku,desc,qty\nA,screen,10\n\\.\nB,tablet,20\nC,plain,30\n")

    run = run_now(imp)

    # Then that line is a bad row, and B and C are still there
    assert (run.status, run.rows_read, run.rows_failed, run.rows_deleted) == (
        "partial", 4, 1, 0
    )  # fmt: skip
    assert row_errors(run) == [(3, None, "expected 3 fields, found 1")]
    assert sorted(records(imp)) == ["A", "B", "C"]


@both_paths
def test_text_after_a_closing_quote_fails_the_file_whichever_path_reads_it(alice, csv_server):
    body = 'sku,name\nA,"abc"def\nB,plain\n'
    imp = make_import(alice, csv_server.serve("/p.csv", body))

    run = run_now(imp)

    assert run.status == "failed"
    assert "a quoted field goes on after its closing quote" in run.error_message
    assert records(imp) == {}


def test_the_check_finds_what_straddles_two_blocks():
    # A block ending inside `x"x`, or inside a `\.` line, is refused once the next one comes
    misreads = stage_copy.CopyMisreads(b",")
    misreads.feed(b"sku,desc\nA,5")
    with pytest.raises(stage_copy.CopyRejected, match="neither opens nor closes"):
        misreads.feed(b'" screen\n')
    misreads = stage_copy.CopyMisreads(b",")
    misreads.feed(b"A,1\n\\")
    with pytest.raises(stage_copy.CopyRejected, match="end-of-data marker"):
        misreads.feed(b".\r\nB,2\n")
    # At the end of the file too; and quoted fields, doubled quotes and `"\."` are fine
    misreads = stage_copy.CopyMisreads(b";")
    misreads.feed(b'A;"say ""hi"", then go";"\\."\nB;"";x\n\\.')
    with pytest.raises(stage_copy.CopyRejected, match="end-of-data marker"):
        misreads.finish()
    # An inch mark at a field's end, split from its field by the block's end
    misreads = stage_copy.CopyMisreads(b",")
    misreads.feed(b'A,"quoted",Monitor 24')
    with pytest.raises(stage_copy.CopyRejected, match="neither opens nor closes"):
        misreads.feed(b'",10\nB,x,"y"\n')


def test_a_well_quoted_file_stays_on_the_fast_path(alice, csv_server, caplog):
    # Quoted fields with delimiters, doubled quotes, line breaks, an empty quoted field, CRLF
    body = (
        "sku,name,notes\r\n"
        'A,"Anvil, heavy","say ""hi"""\r\n'
        'B,"",plain\r\n'
        'C,"two\r\nlines","""quoted"""\r\n'
        'D,"\\.",x\r\n'
    )
    imp = make_import(alice, csv_server.serve("/p.csv", body))

    with caplog.at_level("INFO", logger="importbeat.importer"):
        run = run_now(imp)

    assert (run.status, run.rows_inserted) == ("succeeded", 4)
    assert "parsing in Python" not in caplog.text
    assert records(imp)["A"]["notes"] == 'say "hi"'
    assert records(imp)["C"] == {"sku": "C", "name": "two\r\nlines", "notes": '"quoted"'}
