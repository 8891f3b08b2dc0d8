"""Settings an operator's PostgreSQL carries for importbeat's database (`ALTER DATABASE … SET`),
as the tests of the settings importbeat pins give them to the test database: every new session
takes them, this process's next one included; undone at the end (README: Server settings
importbeat pins)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from django.db import connection

from project.devservices import free_port
from schedules import services
from schedules.models import ImportRun
from tests.conftest import wait_for
from tests.factories import make_import
from tests.reliability import FAST
from tests.standby_support import DATABASE, Cluster, _cluster_user, binaries

# The application's role on a cluster of the test's own: no superuser, as a managed server's.
APP_ROLE = "app"


@contextmanager
def database_setting(name: str, value: str) -> Iterator[None]:
    """New sessions of the test database run with `name` = `value` meanwhile; this process's
    connection is opened again, so that it is one of them."""
    database = connection.settings_dict["NAME"]
    with connection.cursor() as cursor:
        cursor.execute(f'ALTER DATABASE "{database}" SET {name} = %s', [value])
    connection.close()
    try:
        yield
    finally:
        # A session opened under the setting, whatever it reads: the reset needs none of it.
        connection.close()
        with connection.cursor() as cursor:
            cursor.execute(f'ALTER DATABASE "{database}" RESET {name}')
        connection.close()


def twenty_imports_run_three_times(alice, bob, csv_server, processes, within: float) -> float:
    """On a server whose transactions default to serializable, two of the Procfile's workers of
    four run twenty imports of a 2,000-row file three times over: bob's twelve write to three
    datasets, alice's eight to one each. The seconds from the workers ready to the last run's
    end (each round waits `within` seconds at most); the workers are stopped after."""
    rows = "".join(f"K{i},n{i},{i}\n" for i in range(2000))
    source = csv_server.serve("/p.csv", "sku,name,price\n" + rows)
    imports = [
        make_import(bob, source, name=f"b{i}", dataset=f"shared{i % 3}", retry_backoff_seconds=1)
        for i in range(12)
    ] + [
        make_import(alice, source, name=f"a{i}", dataset=f"a{i}", retry_backoff_seconds=1)
        for i in range(8)
    ]
    with database_setting("default_transaction_isolation", "serializable"):
        for _ in range(2):
            processes.start(
                "worker", **{**FAST, "WORKER_CONCURRENCY": "4", "MAX_RUNNING_PER_OWNER": "3"}
            )
        wait_for(
            lambda: processes.logs().count("ready.") == 2, 60, what="workers\n" + processes.logs()
        )
        started = time.monotonic()
        for _ in range(3):
            for imp in imports:
                services.enqueue_run(imp, trigger="manual", user=imp.owner)
            wait_for(
                lambda: not ImportRun.objects.exclude(status__in=ImportRun.FINAL_STATUSES).exists(),
                within,
                what="the runs to end\n" + processes.logs(),
            )
        elapsed = time.monotonic() - started
        processes.stop_all()
    return elapsed


GERMAN = "de_DE.UTF-8"


@contextmanager
def a_server_in_german() -> Iterator[Cluster]:
    """A PostgreSQL cluster of the test's own whose messages are German (`lc_messages`), with
    the database `importbeat` and the role `app` (a login, no superuser); stopped and removed
    at the end. Skips where this machine has no German locale (`localedef -i de_DE -f UTF-8
    de_DE.UTF-8`) or no PostgreSQL with German messages (Debian's postgresql-<version>)."""
    if "de_DE.utf8" not in subprocess.run(["locale", "-a"], capture_output=True, text=True).stdout:
        pytest.skip("no de_DE.UTF-8 locale here: localedef -i de_DE -f UTF-8 de_DE.UTF-8")
    german = [
        bin_dir
        for name, bin_dir in binaries().items()
        if Path(
            f"/usr/share/locale/de/LC_MESSAGES/postgres-{name.removeprefix('system-')}.mo"
        ).exists()
    ]
    if not german:
        pytest.skip("no PostgreSQL with German messages here (Debian's postgresql-<version>)")
    with a_cluster(german[0], f"lc_messages = '{GERMAN}'\n") as cluster:
        yield cluster


@contextmanager
def a_server_with_jit() -> Iterator[Cluster]:
    """A PostgreSQL cluster of the test's own that compiles statements with LLVM (JIT), as
    Debian's does (pgserver's has no JIT), with the database `importbeat` and the role `app`;
    skips where no such PostgreSQL is here."""
    for name, bin_dir in binaries().items():
        if name.startswith("system-") and (bin_dir.parent / "lib" / "llvmjit.so").exists():
            with a_cluster(bin_dir, "") as cluster:
                yield cluster
            return
    pytest.skip("no PostgreSQL with JIT here (Debian's postgresql-<version>)")


@contextmanager
def a_cluster(bin_dir: Path, conf: str) -> Iterator[Cluster]:
    """A new cluster of `bin_dir`'s PostgreSQL with `conf` added to its postgresql.conf, the
    database DATABASE and the role APP_ROLE (a login, no superuser); stopped and removed after."""
    user = _cluster_user()
    home = Path(tempfile.mkdtemp(prefix="importbeat-server-"))
    cluster = Cluster(home / "data", free_port(), user, bin_dir)
    try:
        if user is not None:
            shutil.chown(home, user, user)
        cluster.initdb()
        with open(cluster.folder / "postgresql.conf", "a") as postgresql_conf:
            postgresql_conf.write(conf)
        cluster.start()
        cluster.program("createdb", "-h", "127.0.0.1", "-p", cluster.port, "-U", "postgres",
                        DATABASE)  # fmt: skip
        with psycopg.connect(cluster.url, autocommit=True) as superuser:
            superuser.execute(f"CREATE ROLE {APP_ROLE} LOGIN NOSUPERUSER")
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(home, ignore_errors=True)
