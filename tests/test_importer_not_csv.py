"""A file that is not a CSV, or not in its encoding, fails at once and says so."""

import pytest

from tests.factories import make_import
from tests.importer_support import (  # noqa: F401
    both_paths,
    run_now,
    staging_path,
)

pytestmark = pytest.mark.django_db


def test_an_html_page_fails_as_not_a_csv(alice, csv_server):
    body = "<!DOCTYPE html>\n<html><body>Log in</body></html>\n"
    imp = make_import(
        alice, csv_server.serve("/p.csv", body, headers={"Content-Type": "text/html"})
    )

    run = run_now(imp)

    assert (run.status, run.attempts) == ("failed", 1)
    assert "not a CSV (it looks like HTML" in run.error_message


def test_a_binary_file_fails_as_not_a_csv(alice, csv_server):
    # Not gzip or zip, which are read as the CSV they hold (test_compressed_sources.py).
    png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256))
    imp = make_import(alice, csv_server.serve("/p.csv", png))

    run = run_now(imp)

    assert (run.status, run.attempts) == ("failed", 1)
    assert "not a CSV: it holds binary data" in run.error_message


@both_paths
def test_bytes_that_are_not_utf8_fail_naming_the_encoding_and_the_line(alice, csv_server):
    # Given a Latin-1 file on an import that says UTF-8, the bad byte on line 3
    body = "sku,name\nA-1,Anvil\nB-2,Crème\n".encode("latin-1")
    imp = make_import(alice, csv_server.serve("/p.csv", body))

    run = run_now(imp)

    assert (run.status, run.attempts) == ("failed", 1)
    assert "not valid utf-8 near line 3" in run.error_message
    assert "set the import's encoding" in run.error_message
    assert imp.dataset.records.count() == 0


@both_paths
def test_a_nul_byte_inside_the_file_fails_as_binary(alice, csv_server):
    body = b"sku,name\n" + b"A-1,Anvil\n" * 5000 + b"B-2,Bu\x00cket\n"
    imp = make_import(alice, csv_server.serve("/p.csv", body))

    run = run_now(imp)

    assert run.status == "failed"
    assert "binary data" in run.error_message


@both_paths
def test_an_unterminated_quote_fails_as_an_invalid_csv(alice, csv_server):
    imp = make_import(alice, csv_server.serve("/p.csv", 'sku,name\nA-1,"Anvil\nB-2,Bucket\n'))

    run = run_now(imp)

    # Then it says where, in plain words (not the csv module's "unexpected end of data":
    # test_importer_csv_errors_in_plain_words.py)
    assert run.status == "failed"
    assert run.error_message == (
        "the file is not a valid CSV: the file ends inside a quoted field: a quote opened in "
        "the row starting on line 2 is never closed"
    )
