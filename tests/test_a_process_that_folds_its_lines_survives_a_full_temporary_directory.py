"""A process whose fold of repeated lines (common.said_once) was made while /tmp had room says
its first words once /tmp is full, and lives on.

Regression (reviewC hunt): the fold's table was the pages of a temporary file, given their disk
only at their first write; a worker made its fold at start, and at its first hand-back on a full
/tmp (a disk full is often why runs are handed back) the write into the mapping killed the pool
process with SIGBUS, nothing said. A real tmpfs of 64 KiB, mounted in a namespace of the test's
own (skipped where the system allows none), filled after the fold was made.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from project.devservices import BASE_DIR

FOLD_THEN_FILL_THEN_SAY = textwrap.dedent(
    """
    import sys, tempfile
    tempfile.tempdir = sys.argv[1]
    from common.said_once import SaidOnce

    fold = SaidOnce()
    with open(sys.argv[1] + "/filler", "wb", buffering=0) as filler:
        try:
            while True:
                filler.write(bytes(4096))
        except OSError:
            pass
    print("said", repr(fold.again("Redis is away")), repr(fold.again("Redis is away")))
    """
)


def in_a_mount_namespace_of_our_own() -> bool:
    try:
        return subprocess.run(["unshare", "-rm", "true"], capture_output=True).returncode == 0
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not in_a_mount_namespace_of_our_own(), reason="no mount namespace here")
def test_a_fold_made_before_tmp_filled_says_its_first_words_once_it_is_full(tmp_path):
    # Given a process whose fold was made while its temporary directory had room
    place = tmp_path / "tmp"
    place.mkdir()
    # When that directory fills, then the process meets the same words twice
    said = subprocess.run(
        [
            "unshare",
            "-rm",
            "sh",
            "-c",
            f'mount -t tmpfs -o size=64k tmpfs "$1" && exec "{sys.executable}" -c "$2" "$1"',
            "sh",
            str(place),
            FOLD_THEN_FILL_THEN_SAY,
        ],
        cwd=BASE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
    )

    # Then it says them once, folds the second, and exits as it should (not killed by SIGBUS)
    assert (said.returncode, said.stdout.strip()) == (0, "said '' None"), said.stderr
