"""A PgBouncer of the test's own in front of the suite's PostgreSQL, for the pooler tests.

Debian's pgbouncer (`make pgbouncer`), on a free port of 127.0.0.1, with its ini, its user list
and its log in a folder of its own, removed at the end. It pools the test's database (the one
`test_database_url()` names) under the same name, with `auth_type = trust`, and goes to the
server the way the suite does (its host, a socket folder or an address, and its port). As root
it runs as pgserver's user, as the test clusters do (tests/standby_support.py): PgBouncer will
not run as root.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import psycopg
from django.conf import settings
from django.db import connection

from project.devservices import free_port
from tests.conftest import test_database_url
from tests.standby_support import _cluster_user

PGBOUNCER = Path("/usr/sbin/pgbouncer")


class PgBouncer:
    """One PgBouncer process: `url` is DATABASE_URL through it, `show()` its admin console."""

    def __init__(self, folder: Path, port: int, process: subprocess.Popen) -> None:
        self.folder, self.port, self.process = folder, port, process

    @property
    def url(self) -> str:
        """The test database's URL with PgBouncer's address in place of the server's."""
        parts = urllib.parse.urlsplit(test_database_url())
        user = settings.DATABASES["default"]["USER"]
        return urllib.parse.urlunsplit(
            parts._replace(
                netloc=f"{user}@127.0.0.1:{self.port}",
                path=f"/{connection.settings_dict['NAME']}",
            )
        )

    def show(self, what: str) -> list[dict]:
        """`SHOW <what>` on PgBouncer's admin console (pools, clients, servers, stats…)."""
        user = settings.DATABASES["default"]["USER"]
        with psycopg.connect(
            host="127.0.0.1", port=self.port, user=user, dbname="pgbouncer", autocommit=True,
            prepare_threshold=None,
        ) as conn:  # fmt: skip
            cursor = conn.cursor()
            cursor.execute(f"SHOW {what}", prepare=False)
            names = [column.name for column in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def log(self) -> str:
        path = self.folder / "pgbouncer.log"
        return path.read_text(errors="replace")[-6000:] if path.exists() else ""


def server_address() -> tuple[str, str]:
    """Where the suite's PostgreSQL listens: (host or socket folder, port)."""
    own = settings.DATABASES["default"]
    return own["HOST"] or "/var/run/postgresql", str(own["PORT"] or 5432)


@contextlib.contextmanager
def pgbouncer(pool_mode: str = "transaction", **options: object) -> Iterator[PgBouncer]:
    """A PgBouncer pooling the test's database in `pool_mode`, with `options` added to its
    `[pgbouncer]` section (max_client_conn=…, default_pool_size=…); stopped and its folder
    removed at the end, whatever happened."""
    if not PGBOUNCER.exists():
        raise RuntimeError("pgbouncer is not installed: run `make pgbouncer`")
    user = _cluster_user()
    folder = Path(tempfile.mkdtemp(prefix="importbeat-pgbouncer-"))
    port = free_port()
    host, server_port = server_address()
    name = connection.settings_dict["NAME"]
    role = settings.DATABASES["default"]["USER"]
    settings_lines = {
        "listen_addr": "127.0.0.1",
        "listen_port": port,
        "unix_socket_dir": "",
        "auth_type": "trust",
        "auth_file": folder / "userlist.txt",
        "admin_users": role,
        "pool_mode": pool_mode,
        "logfile": folder / "pgbouncer.log",
        "pidfile": folder / "pgbouncer.pid",
        "default_pool_size": 20,
        "max_client_conn": 200,
        # The processes name their sessions (common/application_name.py).
        "ignore_startup_parameters": "extra_float_digits",
        **options,
    }
    ini = [
        "[databases]",
        f"{name} = host={host} port={server_port} dbname={name} user={role}",
        "[pgbouncer]",
        *(f"{key} = {value}" for key, value in settings_lines.items()),
    ]
    (folder / "pgbouncer.ini").write_text("\n".join(ini) + "\n")
    (folder / "userlist.txt").write_text(f'"{role}" ""\n')
    if user is not None:
        shutil.chown(folder, user, user)
        for path in folder.iterdir():
            shutil.chown(path, user, user)
    process = subprocess.Popen(
        [str(PGBOUNCER), str(folder / "pgbouncer.ini")],
        user=user,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    bouncer = PgBouncer(folder, port, process)
    try:
        _wait_until_it_listens(bouncer)
        yield bouncer
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        shutil.rmtree(folder, ignore_errors=True)


def _wait_until_it_listens(bouncer: PgBouncer, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if bouncer.process.poll() is not None:
            raise RuntimeError(f"pgbouncer exited ({bouncer.process.returncode}): {bouncer.log()}")
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", bouncer.port), timeout=1),
        ):
            return
        time.sleep(0.05)
    raise RuntimeError(f"pgbouncer did not listen within {timeout}s: {bouncer.log()}")
