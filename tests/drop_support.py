"""Helpers for drop-folder and compressed-source tests (the `drop` fixture is conftest's)."""

from __future__ import annotations

import gzip
import io
import os
import subprocess
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

# A delivered file was written a while ago: one written a moment before its run is looked at
# again a few seconds later (tasks.whole_file), which tests of that say themselves.
DELIVERED_AGO_SECONDS = 60


def put(path: Path, body: bytes | str, mtime: float | None = None) -> Path:
    """`body` delivered as the file `path`, written DELIVERED_AGO_SECONDS ago unless `mtime`
    says when (a later `put` is still the newer file)."""
    path.write_bytes(body.encode() if isinstance(body, str) else body)
    if mtime is None:
        mtime = time.time() - DELIVERED_AGO_SECONDS
    os.utime(path, (mtime, mtime))
    return path


def gzipped(body: bytes | str) -> bytes:
    return gzip.compress(body.encode() if isinstance(body, str) else body)


def zipped(members: dict[str, bytes | str]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, body in members.items():
            archive.writestr(name, body)
    return out.getvalue()


@contextmanager
def undeletable(path: Path) -> Iterator[Path]:
    """`path` cannot be deleted, even by root (these tests run as root in CI): immutable."""
    with _attribute(path, "i"):
        yield path


@contextmanager
def append_only(folder: Path) -> Iterator[Path]:
    """Files may be added to `folder` and not removed from it, even by root: `chattr +a`."""
    with _attribute(folder, "a"):
        yield folder


@contextmanager
def _attribute(path: Path, flag: str) -> Iterator[None]:
    """`path` with the file attribute `flag` (chattr) while in use; the test is skipped where
    the file system or the user does not allow it."""
    if subprocess.run(["chattr", f"+{flag}", str(path)], capture_output=True).returncode != 0:
        pytest.skip(f"no chattr +{flag} here (the file system or the user does not allow it)")
    try:
        yield
    finally:
        subprocess.run(["chattr", f"-{flag}", str(path)], check=True)
