"""Benchmark: reading a large file from OpenSSH's sshd through tasks.sftp, as a run reads it.

Also compares how many read requests the reader keeps in flight (tasks.sftp.WINDOW_REQUESTS,
32 KiB each): more requests in flight hide the round trips, at the cost of that much memory.

Run with `make bench` (or this file alone). A 256 MiB CSV is served by a throw-away sshd on
loopback; the fetch reads it to the end in 64 KiB reads (what the importer's reader asks for),
with the watchdog and size cap on. Printed: seconds, MiB/s, the process's RSS before and its
peak while reading (sampled every 10 ms), and the same for the HTTP fetch of the same file
from the suite's local HTTP server as the reference. Memory should stay flat: the SFTP reader
keeps at most one window of WINDOW_REQUESTS x 32 KiB requests in flight. Timings are printed,
never asserted.
"""

from __future__ import annotations

import threading
import time

import psutil
import pytest

from schedules.models import ScheduledImport
from tasks import sftp
from tasks.fetch import open_source
from tasks.source_options import source_options

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("encryption_key")]

SIZE = 256 * 1024 * 1024
READ = 64 * 1024


def _file() -> bytes:
    line = b"SKU-0000000001,A product with a name of some length,12345.67,2026-12-03\n"
    return line * (SIZE // len(line))


def _measure(url: str, imp: ScheduledImport | None) -> dict[str, float]:
    process = psutil.Process()
    before = process.memory_info().rss
    peak = [before]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.01):
            peak[0] = max(peak[0], process.memory_info().rss)

    threading.Thread(target=sample, daemon=True).start()
    options = source_options(imp) if imp is not None else None
    started = time.monotonic()
    total = 0
    with open_source(url, options=options) as (stream, _length):
        while chunk := stream.read(READ):
            total += len(chunk)
    took = time.monotonic() - started
    done.set()
    mib = total / 1024**2
    return {
        "MiB": round(mib),
        "seconds": round(took, 2),
        "MiB/s": round(mib / took, 1),
        "RSS before MiB": round(before / 1024**2),
        "RSS peak growth MiB": round((peak[0] - before) / 1024**2, 1),
    }


def bench_sftp_stream_reads_a_large_file_with_flat_memory(alice, sftp_server, csv_server, settings):
    body = _file()
    settings.MAX_IMPORT_BYTES = 2 * SIZE
    sftp_server.put("big.csv", body)
    http_url = csv_server.serve("/big.csv", body)
    imp = ScheduledImport(
        owner=alice, source_url=sftp_server.url("big.csv"), key_column="sku", name="big"
    )
    imp.credential = sftp_server.credential
    imp.seal_credential()
    del body

    print()
    for window in (sftp.WINDOW_REQUESTS, 128, 32):
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(sftp, "WINDOW_REQUESTS", window)
            print(f"sftp, {window:3} requests in flight:", _measure(imp.source_url, imp))
    print("http (reference):            ", _measure(http_url, None))
