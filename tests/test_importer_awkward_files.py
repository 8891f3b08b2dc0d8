"""Valid but awkward CSV files load exactly, on the COPY path and on the Python path."""

import pytest

from tasks.source_check import inspect_source
from tests.factories import make_import
from tests.importer_support import (  # noqa: F401
    both_paths,
    records,
    row_errors,
    run_now,
    staging_path,
)

pytestmark = pytest.mark.django_db


@both_paths
def test_it_keeps_quoted_commas_quotes_and_newlines_inside_fields(alice, csv_server):
    # Given a file whose quoted fields hold the delimiter, quotes and line breaks
    body = (
        "sku,name,notes\n"
        'A-1,"Crate, large","He said ""heavy"""\n'
        'B-2,Bucket,"line one\nline two\r\nline three"\n'
        "C-3,Chisel,\n"
    )
    imp = make_import(alice, csv_server.serve("/p.csv", body))

    # When it is imported
    run = run_now(imp)

    # Then every field is exact and the row after the multi-line field is counted once
    assert run.status == "succeeded", run.error_message
    assert (run.rows_read, run.rows_inserted) == (3, 3)
    assert records(imp) == {
        "A-1": {"sku": "A-1", "name": "Crate, large", "notes": 'He said "heavy"'},
        "B-2": {"sku": "B-2", "name": "Bucket", "notes": "line one\nline two\r\nline three"},
        "C-3": {"sku": "C-3", "name": "Chisel", "notes": ""},
    }


@both_paths
def test_it_numbers_lines_after_a_multi_line_field_by_physical_line(alice, csv_server):
    # Given a multi-line field on lines 2-4 and an empty key on line 5
    body = 'sku,notes\nA-1,"one\ntwo\nthree"\n,orphan\nB-2,ok\n'
    imp = make_import(alice, csv_server.serve("/p.csv", body))

    run = run_now(imp)

    # Then the bad row is reported on the line a text editor shows
    assert run.status == "partial"
    assert row_errors(run) == [(5, "sku", "the key is empty")]


@both_paths
def test_it_drops_a_utf8_byte_order_mark(alice, csv_server):
    body = "\ufeffsku,name\nA-1,Äpfel\n".encode()
    imp = make_import(alice, csv_server.serve("/p.csv", body))

    run = run_now(imp)

    assert run.status == "succeeded", run.error_message
    assert records(imp) == {"A-1": {"sku": "A-1", "name": "Äpfel"}}


@both_paths
def test_it_decodes_latin1_when_the_import_says_so(alice, csv_server):
    body = "sku,name\nA-1,Crème brûlée\nB-2,Façade\n".encode("latin-1")
    imp = make_import(alice, csv_server.serve("/p.csv", body), encoding="latin-1")

    run = run_now(imp)

    assert run.status == "succeeded", run.error_message
    assert records(imp)["A-1"]["name"] == "Crème brûlée"
    assert records(imp)["B-2"]["name"] == "Façade"


@both_paths
def test_it_reads_crlf_line_ends_and_no_final_newline(alice, csv_server):
    body = "sku,name\r\nA-1,Anvil\r\nB-2,Bucket"
    imp = make_import(alice, csv_server.serve("/p.csv", body))

    run = run_now(imp)

    assert run.status == "succeeded", run.error_message
    assert records(imp) == {
        "A-1": {"sku": "A-1", "name": "Anvil"},
        "B-2": {"sku": "B-2", "name": "Bucket"},
    }


@both_paths
def test_it_honours_the_delimiter_and_a_file_without_header(alice, csv_server):
    # Given a semicolon file without header; the columns spec names the columns
    body = "A-1;Anvil;10\nB-2;Bucket;3\n"
    columns = [
        {"name": "sku", "type": "text"},
        {"name": "name", "type": "text"},
        {"name": "qty", "type": "int"},
    ]
    url = csv_server.serve("/p.csv", body)
    imp = make_import(alice, url, delimiter=";", has_header=False, columns=columns)

    run = run_now(imp)

    assert run.status == "succeeded", run.error_message
    assert records(imp)["B-2"] == {"sku": "B-2", "name": "Bucket", "qty": 3}


@both_paths
def test_it_skips_blank_lines_and_trailing_blank_lines(alice, csv_server):
    body = "sku,name\nA-1,Anvil\n\nB-2,Bucket\n\n\n"
    imp = make_import(alice, csv_server.serve("/p.csv", body))

    run = run_now(imp)

    assert run.status == "succeeded", run.error_message
    assert (run.rows_read, run.rows_inserted) == (2, 2)


@both_paths
def test_a_header_only_file_imports_nothing_and_succeeds(alice, csv_server):
    imp = make_import(alice, csv_server.serve("/p.csv", "sku,name\n"))

    run = run_now(imp)

    assert run.status == "succeeded", run.error_message
    assert (run.rows_read, run.rows_inserted, run.rows_failed) == (0, 0, 0)


def test_an_empty_file_fails_because_it_has_no_header(alice, csv_server):
    imp = make_import(alice, csv_server.serve("/p.csv", b""))

    run = run_now(imp)

    assert run.status == "failed"
    assert "empty" in run.error_message


@both_paths
def test_it_loads_a_line_of_several_megabytes(alice, csv_server):
    # Given a field of 5 MB, beyond csv's default field limit and COPY's usual line sizes
    huge = "x" * (5 * 1024 * 1024)
    body = f'sku,blob\nA-1,"{huge}"\nB-2,small\n'
    imp = make_import(alice, csv_server.serve("/p.csv", body))

    run = run_now(imp)

    assert run.status == "succeeded", run.error_message
    assert len(records(imp)["A-1"]["blob"]) == len(huge)
    assert run.bytes_read == len(body)


@both_paths
def test_a_utf16_file_is_read_when_the_import_says_utf16(alice, csv_server):
    # Excel's "Unicode text": UTF-16 with its byte-order mark, tab-separated. Every character
    # below 128 holds a NUL byte, and the file was refused as "binary data" whatever the
    # import's encoding
    body = "sku\tname\r\nA\tÄpfel\r\nB\tBirne\r\nC\r\n".encode("utf-16")
    imp = make_import(alice, csv_server.serve("/p.csv", body), encoding="utf-16", delimiter="\t")

    run = run_now(imp)

    assert (run.status, run.rows_inserted, run.rows_failed) == ("partial", 2, 1)
    assert row_errors(run) == [(4, None, "expected 2 fields, found 1")]
    assert records(imp)["A"] == {"sku": "A", "name": "Äpfel"}


def test_a_utf16_file_read_as_utf8_says_which_encoding_to_set(alice, csv_server):
    body = "sku,name\nA,a\n".encode("utf-16")
    imp = make_import(alice, csv_server.serve("/p.csv", body))

    run = run_now(imp)
    checked = inspect_source(imp)

    said = (
        "the file is UTF-16 text (it begins with its byte-order mark): set the import's "
        "encoding to utf-16"
    )
    assert (run.status, run.error_message) == ("failed", said)
    assert (checked["problems"], checked["suggestions"]) == ([said], {"encoding": "utf-16"})


@both_paths
def test_blank_lines_before_the_header_are_skipped_and_lines_keep_their_numbers(alice, csv_server):
    # The first blank line was taken for a header naming no column
    body = "\r\n\r\nsku,name\r\nA,a\r\nB\r\n"
    imp = make_import(alice, csv_server.serve("/p.csv", body))

    run = run_now(imp)

    assert (run.status, run.rows_inserted) == ("partial", 1), run.error_message
    assert row_errors(run) == [(5, None, "expected 2 fields, found 1")]
    assert records(imp) == {"A": {"sku": "A", "name": "a"}}


def test_a_file_of_a_byte_order_mark_alone_is_empty(alice, csv_server):
    imp = make_import(alice, csv_server.serve("/p.csv", b"\xef\xbb\xbf"))

    run = run_now(imp)

    assert (run.status, run.error_message) == ("failed", "the file is empty: it has no header row")


def test_a_file_with_carriage_returns_alone_past_the_field_limit_is_read(
    alice, csv_server, settings
):
    # Its first record had no line feed to end it: the whole file was "the first line"
    settings.MAX_FIELD_BYTES = 2000
    body = "sku,name\r" + "".join(f"K{i},name {i}\r" for i in range(500))
    imp = make_import(alice, csv_server.serve("/p.csv", body))

    run = run_now(imp)

    assert (run.status, run.rows_inserted) == ("succeeded", 500), run.error_message


@both_paths
def test_a_carriage_return_alone_in_a_quoted_field_moves_later_lines_on_both_paths(
    alice, csv_server
):
    # The csv module counts it as a line break; the fast path did not renumber for it
    body = 'sku,notes\nA,"x\ry"\n,orphan\nB,ok\n'
    imp = make_import(alice, csv_server.serve("/p.csv", body))

    run = run_now(imp)

    assert row_errors(run) == [(4, "sku", "the key is empty")]
