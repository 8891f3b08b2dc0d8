"""A UTF-16/32 import whose file has no byte-order mark, and an encoding no file is written in,
fail in plain words (engine hunt).

Python's `utf-16` and `utf-32` decoders raise a plain UnicodeError ("UTF-16 stream does not
start with BOM"), which the transcoder did not catch: a BOM-less UTF-16LE export, or a UTF-8
file on an import set to utf-16, ran as "an unexpected error in importbeat", and Test source
raised. `idna` was accepted as an import's encoding, and every run of it crashed the same way.
"""

import pytest
from django.core.exceptions import ValidationError

from tasks.runner import INTERNAL_ERROR
from tasks.source_check import inspect_source
from tests.factories import make_import
from tests.importer_support import both_paths, run_now, staging_path  # noqa: F401

pytestmark = pytest.mark.django_db

ROWS = "sku,name\nA-1,Anvil\n"


@both_paths
@pytest.mark.parametrize(
    "body, encoding, wide",
    [
        (ROWS.encode("utf-16-le"), "utf-16", "utf-16"),
        (ROWS.encode("utf-32-le"), "utf-32", "utf-32"),
        (ROWS.encode(), "utf-16", "utf-16"),  # a UTF-8 file, the import set to utf-16
    ],
    ids=["utf16le-without-bom", "utf32le-without-bom", "utf8-file-read-as-utf16"],
)
def test_a_file_without_the_byte_order_mark_its_encoding_needs_fails_in_plain_words(
    alice, csv_server, body, encoding, wide
):
    imp = make_import(alice, csv_server.serve("/p.csv", body), encoding=encoding)

    run = run_now(imp)

    assert run.status == "failed"
    assert run.error_message != INTERNAL_ERROR
    assert f"does not begin with a {wide.upper()} byte-order mark" in run.error_message
    assert f"set the import's encoding to {wide}-le or {wide}-be" in run.error_message


def test_test_source_says_it_too(alice, csv_server):
    body = ROWS.encode("utf-16-le")
    imp = make_import(alice, csv_server.serve("/p.csv", body), encoding="utf-16")

    answer = inspect_source(imp)

    assert answer["ok"] is False
    assert "byte-order mark" in " ".join(answer["problems"])


@pytest.mark.parametrize("encoding", ["idna", "punycode", "unicode_escape", "undefined"])
def test_an_encoding_no_file_is_written_in_is_refused_when_saved(alice, encoding):
    with pytest.raises(ValidationError) as refused:
        make_import(alice, "https://example.com/p.csv", encoding=encoding)
    assert "is not a text encoding" in str(refused.value.message_dict["encoding"])


@both_paths
def test_an_import_saved_with_idna_earlier_fails_in_plain_words(alice, csv_server):
    imp = make_import(alice, csv_server.serve("/p.csv", ROWS))
    type(imp).objects.filter(pk=imp.pk).update(encoding="idna")
    imp.refresh_from_db()

    run = run_now(imp)

    assert run.status == "failed"
    assert "'idna' is not a text encoding" in run.error_message
