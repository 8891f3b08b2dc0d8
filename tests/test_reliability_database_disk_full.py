"""The database's disk fills up under a run's rows: a big file's staging tables are where it
shows first. Before, the run said "the run lost its connection to importbeat's database", and
the operators looked for a network cut or a restart; now it says the disk is full, and whose to
mend it is.

A real full disk: the run's temporary tables go to a tablespace on a filesystem of 1 MB
(tmpfs), mounted for the test. That needs root and a database server on this machine; the test
is skipped elsewhere.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
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


def superuser_session() -> psycopg.Connection:
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    return psycopg.connect(**params, autocommit=True)


@pytest.fixture
def tiny_temp_tablespace(processes) -> Iterator[None]:
    """New sessions of the test database keep their temporary tables on 1 MB."""
    with superuser_session() as session:
        data_directory = Path(session.execute("SHOW data_directory").fetchone()[0])
    if os.geteuid() != 0 or not shutil.which("mount") or not data_directory.is_dir():
        pytest.skip("needs root and the database server's data directory on this machine")
    owner = data_directory.stat()
    place = Path(tempfile.mkdtemp(prefix="importbeat-tiny-"))
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", str(place)],
        capture_output=True,
    )
    if mounted.returncode != 0:
        place.rmdir()
        pytest.skip(f"cannot mount a tmpfs: {mounted.stderr.decode().strip()}")
    name = connection.settings_dict["NAME"]
    tablespace = f"tiny_{name}"
    try:
        os.chown(place, owner.st_uid, owner.st_gid)
        with superuser_session() as session:
            session.execute(f"CREATE TABLESPACE \"{tablespace}\" LOCATION '{place}'")
            session.execute(f'ALTER DATABASE "{name}" SET temp_tablespaces = "{tablespace}"')
        yield
    finally:
        processes.stop_all()  # their sessions hold temporary files there
        with superuser_session() as session:
            session.execute(f'ALTER DATABASE "{name}" RESET temp_tablespaces')
            session.execute(f'DROP TABLESPACE IF EXISTS "{tablespace}"')
        subprocess.run(["umount", "-l", str(place)], check=False)
        place.rmdir()


def test_a_run_whose_rows_fill_the_databases_disk_says_so(
    alice, csv_server, processes, tiny_temp_tablespace
):
    # Given an import of a file of 4 MB, without retries, and 1 MB for its staging tables
    imp = make_import(alice, csv_server.serve("/big.csv", big_csv(120_000)), max_retries=0)
    processes.start("worker", **FAST)

    # When it runs
    run = services.enqueue_run(imp, trigger="manual", user=alice)

    # Then it fails saying the database's disk is full, not that a connection was lost
    run = wait_for(
        lambda: ImportRun.objects.filter(pk=run.pk, status="failed").first(),
        90,
        what="the run to fail\n" + processes.logs(),
    )
    assert run.error_message == f"{DATABASE_FULL}; the import allows no retries"
    assert "database disk full" in processes.logs()
