"""Compressed sources (issue 14, point 4): gzip and a zip holding one CSV, over HTTP and from a
drop folder, read as the CSV itself; the size cap counts the decompressed bytes."""

from __future__ import annotations

import gzip
import zlib

import pytest

from schedules import unsaved_checks
from schedules.models import Record
from tasks import fetch, source_check
from tasks.errors import PermanentImportError
from tests.drop_support import gzipped, put, zipped
from tests.factories import PRODUCTS_CSV, make_import
from tests.importer_support import records, run_now

pytestmark = pytest.mark.django_db

KEYS = {"A-1", "B-2", "C-3"}


def test_a_gzip_file_over_http_is_imported_as_its_csv(alice, csv_server):
    body = gzipped(PRODUCTS_CSV)
    imp = make_import(alice, csv_server.serve("/products.csv.gz", body))

    run = run_now(imp)

    assert run.status == "succeeded", run.error_message
    assert set(records(imp)) == KEYS
    # Progress counts the download: the compressed bytes, against their length.
    assert (run.bytes_read, run.bytes_total) == (len(body), len(body))


def test_gzip_is_recognised_by_its_bytes_whatever_the_name(alice, csv_server):
    imp = make_import(alice, csv_server.serve("/export", gzipped(PRODUCTS_CSV)))

    assert run_now(imp).status == "succeeded"
    assert set(records(imp)) == KEYS


def test_content_encoding_gzip_still_works(alice, csv_server):
    url = csv_server.serve("/p.csv", gzipped(PRODUCTS_CSV), headers={"Content-Encoding": "gzip"})
    imp = make_import(alice, url)

    assert run_now(imp).status == "succeeded"
    assert set(records(imp)) == KEYS


def test_a_zip_holding_one_csv_is_imported(alice, csv_server):
    body = zipped({"products.csv": PRODUCTS_CSV, "folder/": "", "__MACOSX/._products.csv": "x"})
    imp = make_import(alice, csv_server.serve("/products.zip", body))

    run = run_now(imp)

    assert run.status == "succeeded", run.error_message
    assert set(records(imp)) == KEYS
    assert run.bytes_total == len(body)


def test_a_zip_with_several_files_is_refused_naming_them_unless_one_is_named(alice, csv_server):
    other = PRODUCTS_CSV.replace("A-1", "Z-9")
    url = csv_server.serve(
        "/both.zip", zipped({"products.csv": PRODUCTS_CSV, "b/other.csv": other})
    )
    imp = make_import(alice, url)

    refused = run_now(imp)

    assert refused.status == "failed" and refused.attempts == 1
    assert "holds 2 files: products.csv, b/other.csv" in refused.error_message
    assert "source_member" in refused.error_message
    imp.source_member = "b/other.csv"
    imp.save()
    named = run_now(imp)
    assert named.status == "succeeded", named.error_message
    assert set(records(imp)) == {"Z-9", "B-2", "C-3"}
    imp.source_member = "missing.csv"
    imp.save()
    missing = run_now(imp)
    assert "holds no 'missing.csv'" in missing.error_message
    assert "products.csv, b/other.csv" in missing.error_message


def test_compressed_files_in_a_drop_folder_are_imported(alice, drop):
    put(drop / "products.csv.gz", gzipped(PRODUCTS_CSV))
    put(drop / "catalog.zip", zipped({"catalog.csv": PRODUCTS_CSV.replace("A-1", "Z-9")}))
    gz = make_import(alice, f"file://{drop}/products.csv.gz")
    zip_ = make_import(alice, f"file://{drop}/*.zip", name="zip", dataset="catalog")

    assert run_now(gz).status == "succeeded" and set(records(gz)) == KEYS
    run = run_now(zip_)
    assert run.status == "succeeded" and run.source_file == str(drop / "catalog.zip")
    assert set(records(zip_)) == {"Z-9", "B-2", "C-3"}


def endless_rows(megabytes: int) -> bytes:
    """A gzip of a header and `megabytes` MB of rows: a few KB that expand a thousand-fold."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    row = b"A-1,Anvil,10.50\n" * 65536  # 1 MiB
    out = [packer.compress(b"sku,name,price\n")]
    out += [packer.compress(row) for _ in range(megabytes)]
    return b"".join(out) + packer.flush()


def test_a_gzip_expanding_past_the_cap_is_stopped_for_good(alice, csv_server, settings):
    settings.MAX_IMPORT_BYTES = 2 * 1024**2
    bomb = endless_rows(16)
    assert len(bomb) < 50_000
    url = csv_server.serve("/bomb.csv.gz", bomb)
    imp = make_import(alice, url)

    run = run_now(imp)

    assert run.status == "failed"
    assert run.error_message == (
        "the file expands to more than the 2097152-byte limit (MAX_IMPORT_BYTES) when decompressed"
    )
    assert not Record.objects.filter(dataset=imp.dataset).exists()
    # Permanent: a worker would not try it again.
    with pytest.raises(PermanentImportError), fetch.open_source(url) as (stream, _length):
        stream.read()


def test_a_zip_expanding_past_the_cap_is_stopped_for_good(alice, drop, settings):
    settings.MAX_IMPORT_BYTES = 2 * 1024**2
    put(drop / "bomb.zip", zipped({"bomb.csv": gzip.decompress(endless_rows(16))}))
    imp = make_import(alice, f"file://{drop}/bomb.zip")

    run = run_now(imp)

    assert run.status == "failed"
    assert "expands to more than the 2097152-byte limit" in run.error_message


def test_a_damaged_gzip_fails_in_plain_words(alice, csv_server):
    body = gzipped(PRODUCTS_CSV * 50)
    truncated = make_import(alice, csv_server.serve("/cut.gz", body[: len(body) // 2]))
    garbled = make_import(
        alice, csv_server.serve("/bad.gz", body[:12] + b"\xff" * 40 + body[52:]), name="bad"
    )

    assert run_now(truncated).error_message == "the gzip file ends early: it is truncated"
    assert "the gzip file is damaged" in run_now(garbled).error_message


def test_a_zip_whose_file_name_is_not_the_utf8_it_claims_fails_in_plain_words(alice, csv_server):
    # Given a zip whose member's name is flagged UTF-8 but holds a byte that UTF-8 cannot
    body = bytearray(zipped({"a.csv": PRODUCTS_CSV}))
    for header, flags_at in ((b"PK\x03\x04", 7), (b"PK\x01\x02", 9)):
        start = body.find(header)
        body[start + flags_at] |= 0x08  # general purpose bit 11: the name is UTF-8
    name = body.find(b"a.csv")
    body[name] = body[body.find(b"a.csv", name + 1)] = 0xFF
    imp = make_import(alice, csv_server.serve("/odd.zip", bytes(body)))

    # When it runs, then it fails for good in plain words (before: "unexpected error")
    run = run_now(imp)
    assert run.status == "failed"
    assert run.error_message == (
        "the zip file is damaged: a file name in it is marked UTF-8 but is not"
    )


def _check(fields: dict) -> dict:
    """The worker's check of an unsaved import with `fields` (left in Redis as the API does)."""
    return source_check.check_fields(unsaved_checks.put(fields, wait=10))


def test_check_before_save_reads_compressed_and_drop_folder_sources(alice, csv_server, drop):
    put(drop / "products.zip", zipped({"a.csv": "sku,x\n1,2\n", "products.csv": PRODUCTS_CSV}))
    gz = csv_server.serve("/products.csv.gz", gzipped(PRODUCTS_CSV))
    fields = {
        "delimiter": ",", "encoding": "utf-8", "has_header": True, "key_column": "sku",
        "owner_id": alice.pk,
    }  # fmt: skip

    over_http = _check({"source_url": gz, **fields})
    several = _check({"source_url": f"file://{drop}/products.zip", **fields})
    named = _check(
        {"source_url": f"file://{drop}/products.zip", "source_member": "products.csv", **fields}
    )
    outside = _check({"source_url": "file:///etc/passwd", **fields})

    assert over_http["ok"] and over_http["columns"] == ["sku", "name", "price"]
    assert over_http["rows"][0] == ["A-1", "Anvil", "10.50"]
    assert not several["ok"] and "holds 2 files: a.csv, products.csv" in several["problems"][0]
    assert named["ok"] and named["key_column_found"], named
    assert not outside["ok"] and "outside the drop folders" in outside["problems"][0]


@pytest.mark.parametrize(
    ("served", "is_said"), [(PRODUCTS_CSV, "not a zip file"), (None, "a gzip")]
)
def test_a_named_member_of_a_download_that_is_no_zip_fails_saying_so(
    alice, csv_server, served, is_said
):
    # Given an import that names a file inside a zip, whose server now sends plain CSV or gzip
    body = gzipped(PRODUCTS_CSV) if served is None else served.encode()
    imp = make_import(alice, csv_server.serve("/export", body), source_member="products.csv")

    # When it runs
    run = run_now(imp)

    # Then it fails at once saying why, instead of importing whatever came (it did, silently)
    assert (run.status, run.attempts) == ("failed", 1)
    assert f"is {is_said}" in run.error_message and "source_member" in run.error_message
    assert not set(records(imp))


GZIPPED_ROWS = "sku,name,price\n" + "".join(f"K-{i:05d},Item {i},{i}.00\n" for i in range(20000))


def test_a_body_gzipped_on_the_way_and_cut_short_fails_and_deletes_nothing(alice, csv_server):
    # urllib3's decoder took a gzip stream cut short for the whole body: the run read the rows
    # before the cut, ended partial, and mode sync deleted the 10,318 after it
    imp = make_import(alice, csv_server.serve("/p.csv", GZIPPED_ROWS), mode="sync")
    assert run_now(imp).rows_inserted == 20000
    body = gzipped(GZIPPED_ROWS)
    csv_server.serve("/p.csv", body[: len(body) // 2], headers={"Content-Encoding": "gzip"})

    run = run_now(imp)

    assert (run.status, run.error_message) == (
        "failed",
        "the gzip file ends early: it is truncated",
    )
    assert (run.rows_deleted, Record.objects.filter(dataset=imp.dataset).count()) == (0, 20000)


@pytest.mark.parametrize("coding", ["utf-8", "none", "binary", "identity", "gzip, identity"])
def test_a_content_encoding_that_is_no_compression_is_read_as_sent(alice, csv_server, coding):
    # An object store's metadata or a misconfigured server labels a plain file "utf-8": such a
    # file failed every run, "an encoding importbeat did not ask for" ("none; it asks for gzip
    # or none")
    body = gzipped(PRODUCTS_CSV) if "gzip" in coding else PRODUCTS_CSV
    imp = make_import(alice, csv_server.serve("/p.csv", body, headers={"Content-Encoding": coding}))

    run = run_now(imp)

    assert (run.status, run.rows_inserted) == ("succeeded", 3), run.error_message


@pytest.mark.parametrize(
    "coding", ["deflate", "gzip, gzip", "gzip, deflate", "br", "zstd", "compress"]
)
def test_a_body_in_a_coding_urllib3_would_decode_is_refused(alice, csv_server, coding):
    imp = make_import(alice, csv_server.serve("/p.csv", b"x", headers={"Content-Encoding": coding}))

    run = run_now(imp)

    assert run.status == "failed"
    assert f"(Content-Encoding: {coding}; it asks for gzip or none)" in run.error_message


def test_progress_of_a_body_gzipped_on_the_way_counts_the_bytes_that_came(alice, csv_server):
    # It counted decoded bytes against the encoded length: 474 % of the file
    body = gzipped(GZIPPED_ROWS)
    url = csv_server.serve("/p.csv", body, headers={"Content-Encoding": "gzip"})
    imp = make_import(alice, url)

    run = run_now(imp)

    assert (run.status, run.rows_inserted) == ("succeeded", 20000)
    assert run.bytes_read == run.bytes_total == len(body)
