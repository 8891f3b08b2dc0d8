"""Benchmark: a small compressed file that expands past MAX_IMPORT_BYTES (1 GiB by default) is
read to the cap and stopped, with memory flat (issue 14, point 4).

Run with `make bench`. Each case runs in a fresh Python process (Django set up, nothing else),
which reads the source through `tasks.fetch.open_source` exactly as a run does and prints its
peak RSS (VmHWM) before the read and after the cap stopped it. Asserts only that the cap
stopped each read with the permanent error; the figures are printed.

The files are generated here: 1.25 GiB of repeated CSV rows, which deflate compresses about a
thousand-fold (~1.3 MB).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import zipfile
import zlib
from pathlib import Path

import pytest

from tests.conftest import BASE_DIR

EXPANDED_MIB = 1280
ROWS_MIB = b"A-1,Anvil,10.50\n" * 65536

CHILD = textwrap.dedent(
    """
    import json, sys, time
    import django
    django.setup()
    from tasks import fetch
    from tasks.errors import PermanentImportError

    def hwm_kb():
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1])

    before = hwm_kb()
    started = time.monotonic()
    out, error = 0, ""
    try:
        with fetch.open_source(sys.argv[1]) as (stream, length):
            while chunk := stream.read(256 * 1024):
                out += len(chunk)
    except PermanentImportError as stop:
        error = str(stop)
    print(json.dumps({"before_kb": before, "after_kb": hwm_kb(), "bytes_out": out,
                      "length": length, "error": error,
                      "seconds": time.monotonic() - started}))
    """
)


def gzip_of_rows(path: Path) -> None:
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    with open(path, "wb") as out:
        out.write(packer.compress(b"sku,name,price\n"))
        for _ in range(EXPANDED_MIB):
            out.write(packer.compress(ROWS_MIB))
        out.write(packer.flush())


def zip_of_rows(path: Path) -> None:
    with (
        zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive,
        archive.open("products.csv", "w", force_zip64=True) as member,
    ):
        member.write(b"sku,name,price\n")
        for _ in range(EXPANDED_MIB):
            member.write(ROWS_MIB)


def read_in_a_fresh_process(url: str, drop: Path) -> dict:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "project.settings",
        "DJANGO_DEBUG": "1",
        "ALLOWED_PRIVATE_HOSTS": "127.0.0.1:*",
        "IMPORT_DROP_DIRS": str(drop),
    }
    done = subprocess.run(
        [sys.executable, "-c", CHILD, url],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.django_db
def bench_a_gigabyte_expanding_file_is_stopped_at_the_cap_with_flat_memory(
    csv_server, tmp_path, settings
):
    drop = tmp_path / "drop"
    drop.mkdir()
    gz, zipped = drop / "products.csv.gz", drop / "products.zip"
    gzip_of_rows(gz)
    zip_of_rows(zipped)
    cap = settings.MAX_IMPORT_BYTES
    cases = {
        "gzip over HTTP": csv_server.serve("/products.csv.gz", gz.read_bytes()),
        "gzip in a drop folder": f"file://{gz}",
        "zip over HTTP (spooled)": csv_server.serve("/products.zip", zipped.read_bytes()),
        "zip in a drop folder": f"file://{zipped}",
    }
    print(
        f"\n{EXPANDED_MIB} MiB of rows; gzip {gz.stat().st_size:,} bytes, zip "
        f"{zipped.stat().st_size:,} bytes; MAX_IMPORT_BYTES {cap:,}"
    )
    print(f"{'case':<26}{'read (MiB)':>11}{'seconds':>9}{'RSS before':>12}{'peak RSS':>10}")
    for name, url in cases.items():
        got = read_in_a_fresh_process(url, drop)
        print(
            f"{name:<26}{got['bytes_out'] / 2**20:>11.0f}{got['seconds']:>9.1f}"
            f"{got['before_kb'] / 1024:>10.0f}MB{got['after_kb'] / 1024:>8.0f}MB"
        )
        assert "expands to more than" in got["error"], got
        assert cap - 2**20 <= got["bytes_out"] <= cap
