"""A UTF-8 file with its byte-order mark, on an import set to a single-byte encoding, is refused
saying to set utf-8, as a UTF-16 file's mark is (engine hunt).

The mark was stripped only on a UTF-8 import: read as cp1252 its three bytes became "ï»¿", glued
to the first column's name, and when the key was another column the run succeeded with a
column "ï»¿name" in every record (and every accented letter garbled).
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


@both_paths
@pytest.mark.parametrize("key", ["sku", "name"], ids=["key-second", "key-first"])
@pytest.mark.parametrize("encoding", ["cp1252", "latin-1"])
def test_a_utf8_bom_on_a_single_byte_import_says_to_set_utf8(alice, csv_server, encoding, key):
    body = "\ufeffname,sku\nCrème,A-1\n".encode()
    imp = make_import(alice, csv_server.serve("/p.csv", body), encoding=encoding, key_column=key)

    run = run_now(imp)

    assert run.status == "failed"
    assert run.error_message == (
        "the file is UTF-8 text (it begins with its byte-order mark): set the import's "
        "encoding to utf-8"
    )
    assert records(imp) == {}


@both_paths
@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig"])
def test_a_utf8_import_still_reads_past_its_mark(alice, csv_server, encoding):
    body = "\ufeffname,sku\nCrème,A-1\n".encode()
    imp = make_import(alice, csv_server.serve("/p.csv", body), encoding=encoding)

    run = run_now(imp)

    assert run.status == "succeeded", run.error_message
    assert records(imp) == {"A-1": {"name": "Crème", "sku": "A-1"}}
