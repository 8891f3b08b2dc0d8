"""A disk fills up under a run: the database's (a big file's staging tables are where it shows
first) or the worker's temporary directory (the spool a big file's rows are read back from).

Before, the database's read "the run lost its connection to importbeat's database", and the
operators looked for a network cut or a restart; the worker's read "the run stopped on an
unexpected error in importbeat". Now each says which disk is full, and that it is the
operators' to mend.

Real full disks: a filesystem of 1 MB (tmpfs), mounted for the test, under the run's temporary
tables (a tablespace) or as the worker's TMPDIR. That needs root, and for the database a server
on this machine; the tests are skipped elsewhere.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from django.db import connection

from schedules import services
from schedules.models import ImportRun
from tasks.errors import DATABASE_FULL
from tests.conftest import wait_for
from tests.factories import make_import
from tests.reliability import FAST, big_csv

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]

# A file of 4 MB: more than the 1 MB filesystem, and than the spool's 1 MB in memory.
ROWS = 120_000


def superuser_session() -> psycopg.Connection:
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    return psycopg.connect(**params, autocommit=True)


@contextmanager
def tiny_filesystem(uid: int, gid: int) -> Iterator[Path]:
    """A tmpfs of 1 MB owned by `uid`:`gid`; skips the test where it cannot be mounted."""
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a filesystem of 1 MB needs root")
    place = Path(tempfile.mkdtemp(prefix="importbeat-tiny-"))
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", str(place)],
        capture_output=True,
    )
    if mounted.returncode != 0:
        place.rmdir()
        pytest.skip(f"cannot mount a tmpfs: {mounted.stderr.decode().strip()}")
    try:
        os.chown(place, uid, gid)
        yield place
    finally:
        subprocess.run(["umount", "-l", str(place)], check=False)
        place.rmdir()


@pytest.fixture
def tiny_temp_tablespace(processes) -> Iterator[None]:
    """New sessions of the test database keep their temporary tables on 1 MB."""
    with superuser_session() as session:
        data_directory = Path(session.execute("SHOW data_directory").fetchone()[0])
    if not data_directory.is_dir():
        pytest.skip("needs the database server's data directory on this machine")
    owner = data_directory.stat()
    name = connection.settings_dict["NAME"]
    tablespace = f"tiny_{name}"
    with tiny_filesystem(owner.st_uid, owner.st_gid) as place:
        try:
            with superuser_session() as session:
                session.execute(f"CREATE TABLESPACE \"{tablespace}\" LOCATION '{place}'")
                session.execute(f'ALTER DATABASE "{name}" SET temp_tablespaces = "{tablespace}"')
            yield
        finally:
            processes.stop_all()  # their sessions hold temporary files there
            with superuser_session() as session:
                session.execute(f'ALTER DATABASE "{name}" RESET temp_tablespaces')
                session.execute(f'DROP TABLESPACE IF EXISTS "{tablespace}"')


def run_to_failure(alice, csv_server, processes, **worker_env: str) -> ImportRun:
    """An import of a file of 4 MB, without retries, run once by a worker until it fails."""
    imp = make_import(alice, csv_server.serve("/big.csv", big_csv(ROWS)), max_retries=0)
    processes.start("worker", **FAST, **worker_env)
    run = services.enqueue_run(imp, trigger="manual", user=alice)
    return wait_for(
        lambda: ImportRun.objects.filter(pk=run.pk, status="failed").first(),
        90,
        what="the run to fail\n" + processes.logs(),
    )


def test_a_run_whose_rows_fill_the_databases_disk_says_so(
    alice, csv_server, processes, tiny_temp_tablespace
):
    # Given 1 MB for the run's staging tables, When it runs
    run = run_to_failure(alice, csv_server, processes)

    # Then it fails saying the database's disk is full, not that a connection was lost
    assert run.error_message == f"{DATABASE_FULL}; the import allows no retries"
    assert "database disk full" in processes.logs()


def test_a_run_whose_file_fills_the_workers_temporary_directory_says_so(
    alice, csv_server, processes
):
    # Given a worker whose temporary directory holds 1 MB, When it runs a file of 4 MB
    with tiny_filesystem(os.geteuid(), os.getegid()) as place:
        run = run_to_failure(alice, csv_server, processes, TMPDIR=str(place))
        processes.stop_all()

    # Then it fails saying the worker's disk is full, and where
    assert run.error_message == (
        f"the worker ran out of disk space for the file in its temporary directory ({place}): "
        "the operators must free space there, or give the workers more (TMPDIR)"
    )
    assert "worker disk full" in processes.logs()
