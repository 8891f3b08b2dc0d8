"""A glob's SFTP folder listing is read keeping only the newest match, under caps on its names
and bytes (attack hunt, finding 3): every entry was kept until the server ended the listing,
and a hostile server listing names without end grew the worker ~20 MB/s (307 MB in 15 s) until
the download's deadline, 30 minutes by default. A listing the watchdog cut is no end of it."""

from __future__ import annotations

import os
import resource
import threading
import time

import paramiko
import pytest

from tasks import sftp
from tests import paramiko_sftp_support as support
from tests.factories import PRODUCTS_CSV, make_import
from tests.importer_support import records, run_now

# Committed rows: the download's watchdog looks for a cancel from a thread of its own, on a
# connection of its own, which found no run inside the test's transaction, and ended a run that
# outlived its first look (a loaded machine) "cancelled: its import was deleted while it ran".
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("encryption_key")]

BATCH = 16  # names in one READDIR answer of paramiko's server


def a_file(name: str) -> paramiko.SFTPAttributes:
    attributes = paramiko.SFTPAttributes()
    attributes.filename, attributes.st_mode, attributes.st_size = name, 0o100644, 1
    attributes.st_mtime = 1_700_000_000
    return attributes


class Endless(list):
    """A listing that never ends, in constant memory on the server's side: paramiko's server
    sends `listing[:16]`, then keeps `listing[16:]` for the next answer."""

    def __init__(self, name: str, stall: threading.Event | None = None) -> None:
        super().__init__()
        self.batch = [a_file(name)] * BATCH
        self.stall = stall
        self.answers = 0

    def __getitem__(self, item):
        if item.start == BATCH:
            return self
        self.answers += 1
        if self.stall is not None and self.answers > 1:
            self.stall.wait(60)  # the second answer never comes (until the test ends)
        return self.batch


@pytest.fixture
def listing(monkeypatch):
    """Make the password SFTP server list any folder as `listing.value`."""

    class Holder:
        value: list | None = None

    real_files = support._files

    def files(root, delay, fstat):
        class Listed(real_files(root, delay, fstat)):
            def list_folder(self, path):
                return Holder.value

        return Listed

    monkeypatch.setattr(support, "_files", files)
    return Holder


def _import(alice, server):
    credential = {"kind": "password", "password": server.password}
    return make_import(alice, server.url("out/products_*.csv"), credential=credential)


def test_a_listing_of_long_names_without_end_fails_at_its_byte_cap(
    alice, password_sftp_server, listing, settings
):
    # Given a server listing 30,000-character names without end, and a 60 s download deadline
    listing.value = Endless("products_" + "x" * 30_000 + ".csv")
    settings.FETCH_TOTAL_TIMEOUT_SECONDS = 60.0
    imp = _import(alice, password_sftp_server)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.monotonic()

    # When it runs
    run = run_now(imp)

    # Then it fails for good at the cap, long before the deadline, its memory flat (+307 MB in
    # 15 s before, and the run ended by the deadline only)
    took = time.monotonic() - started
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    print(f"\n{listing.value.answers} answers in {took:.1f} s, peak RSS +{grown_mb:.0f} MB")
    assert (run.status, run.attempts) == ("failed", 1)
    assert run.error_message == (
        "the SFTP server's listing of /out is too long (more than 67,108,864 bytes of names) to "
        "find the newest file matching the import's glob: move the files already imported out "
        "of the folder, or name the file without a glob"
    )
    assert took < 30
    assert grown_mb < 100


def test_a_listing_of_short_names_without_end_fails_at_its_name_cap(
    alice, password_sftp_server, listing, monkeypatch
):
    # Given a server listing short names without end (a cap of 500 names, to be quick)
    monkeypatch.setattr(sftp, "MAX_LISTING_NAMES", 500)
    listing.value = Endless("products_1.csv")
    imp = _import(alice, password_sftp_server)

    # When it runs, then it fails for good past the 500th name
    run = run_now(imp)
    assert (run.status, run.attempts) == ("failed", 1)
    assert "listing of /out is too long (more than 500 names)" in run.error_message
    assert listing.value.answers == 32


def test_a_listing_the_watchdog_cut_fails_with_its_reason(
    alice, password_sftp_server, listing, settings
):
    # Given a server that lists one matching file, then never answers again
    stall = threading.Event()
    listing.value = Endless("products_1.csv", stall)
    settings.FETCH_TOTAL_TIMEOUT_SECONDS = 2.0
    imp = _import(alice, password_sftp_server)

    # When it runs
    try:
        run = run_now(imp)
    finally:
        stall.set()

    # Then the cut is the deadline's, said of the listing (it said "the download", of a file
    # not yet chosen): no end of the listing, whose newest match would be taken
    assert run.error_message == (
        "the listing of /out took longer than 2s (FETCH_TOTAL_TIMEOUT_SECONDS)"
    )
    assert not records(imp)


def test_the_newest_match_is_kept_across_answers_numbers_as_numbers(alice, password_sftp_server):
    # Given 40 deliveries of one moment (more than two READDIR answers) and a newer non-match
    out = password_sftp_server.root / "out"
    out.mkdir()
    for n in range(1, 41):
        password_sftp_server.put(f"out/products_{n}.csv", PRODUCTS_CSV.replace("Anvil", f"A{n}"))
        os.utime(out / f"products_{n}.csv", (1_700_000_000, 1_700_000_000))
    password_sftp_server.put("out/other.csv", PRODUCTS_CSV)
    imp = _import(alice, password_sftp_server)

    # When it runs, then it takes products_40 (in text order, products_9)
    run = run_now(imp)
    assert run.status == "succeeded", run.error_message
    assert run.source_file.endswith("/out/products_40.csv")
    assert records(imp)["A-1"]["name"] == "A40"
