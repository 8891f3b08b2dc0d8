"""A zip whose table of contents lists millions of entries is refused before zipfile loads it
(attack hunt, finding 2): zipfile made a Python object of every entry listed before importbeat
looked at how many there were, and ~300 KB on the wire (a gzipped zip listing one 51-byte entry
2,000,000 times) made the worker hold 648 MB."""

from __future__ import annotations

import gzip
import resource
import struct

import pytest

from schedules.models import Record
from tests.drop_support import zipped
from tests.factories import PRODUCTS_CSV, make_import
from tests.importer_support import records, run_now

pytestmark = pytest.mark.django_db

REFUSED_WORDS = (
    "importbeat reads one CSV from a zip, so send that file alone or in a zip of its own"
)


def listing(entries: int, name: bytes = b"a.csv", declared: int | None = None) -> bytes:
    """A zip of one empty member whose table of contents lists it `entries` times, its end
    record saying `declared` (zip64 records when it is over 65535)."""
    entry = struct.pack(
        "<4s4B4HL2L5H2L", b"PK\x01\x02", 20, 3, 20, 0, 0, 0, 0, 0, 0, 0, 0, len(name),
        0, 0, 0, 0, 0, 0,
    ) + name  # fmt: skip
    local = struct.pack("<4s2B4HL2L2H", b"PK\x03\x04", 20, 0, 0, 0, 0, 0, 0, 0, 0, len(name), 0)
    body = local + name + entry * entries
    declared = entries if declared is None else declared
    size = len(entry) * entries
    if declared <= 0xFFFF:
        end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, declared, declared, size, 30, 0)
        return body + end
    zip64 = struct.pack(
        "<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, declared, declared, size, len(local)
    )
    locator = struct.pack("<4sLQL", b"PK\x06\x07", 0, len(body), 1)
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    return body + zip64 + locator + end


def test_a_gzipped_zip_listing_two_million_files_is_refused_with_memory_flat(alice, csv_server):
    # Given a server sending ~300 KB, gzipped on the way, of a 102 MB zip listing 2,000,000 files
    archive = listing(2_000_000)
    wire = gzip.compress(archive, 9)
    url = csv_server.serve("/p.zip", wire, headers={"Content-Encoding": "gzip"})
    imp = make_import(alice, url)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    # When it runs
    run = run_now(imp)

    # Then it fails for good, in words, and the worker's peak memory barely moved (648 MB before)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    print(f"\nwire {len(wire):,} B, archive {len(archive):,} B, peak RSS +{grown_mb:.0f} MB")
    assert run.status == "failed" and run.attempts == 1
    assert run.error_message == (
        f"the zip archive lists 2,000,000 files (at most 10,000): {REFUSED_WORDS}"
    )
    assert grown_mb < 100
    assert not Record.objects.filter(dataset=imp.dataset).exists()


def test_a_zip_whose_end_record_understates_its_files_is_counted_in_its_table(alice, csv_server):
    # Given a zip whose end record says 1 file while its table of contents lists 20,000
    # (zipfile reads as many as the table holds, whatever the count says)
    imp = make_import(alice, csv_server.serve("/p.zip", listing(20_000, declared=1)))

    # When it runs, then it is refused, counting the table's entries
    run = run_now(imp)
    assert run.status == "failed"
    assert run.error_message == (
        f"the zip archive lists 20,000 files (at most 10,000): {REFUSED_WORDS}"
    )


def test_a_zip_whose_table_of_contents_is_too_large_is_refused(alice, csv_server):
    # Given a zip listing 5,000 files (allowed) whose 1000-byte names make a 5 MB table
    archive = listing(5_000, name=b"n" * 1000)
    imp = make_import(alice, csv_server.serve("/p.zip", archive))

    # When it runs, then it is refused, saying how large the table is
    run = run_now(imp)
    assert run.status == "failed"
    assert run.error_message == (
        f"the zip archive's table of contents is 5,230,000 bytes (at most 4,194,304): "
        f"{REFUSED_WORDS}"
    )


def test_a_zip_of_as_many_files_as_allowed_is_still_read(alice, csv_server):
    # Given a zip of 10,000 files, one of them the import's source_member
    members = {f"old/{n}.txt": "" for n in range(9_999)}
    imp = make_import(
        alice, csv_server.serve("/p.zip", zipped({**members, "products.csv": PRODUCTS_CSV}))
    )
    imp.source_member = "products.csv"
    imp.save()

    # When it runs, then the member is imported
    run = run_now(imp)
    assert run.status == "succeeded", run.error_message
    assert set(records(imp)) == {"A-1", "B-2", "C-3"}
