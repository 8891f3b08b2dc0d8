"""A real PostgreSQL primary and a hot standby streaming from it, for the failover tests.

The binaries are pgserver's (the embedded PostgreSQL `make install` brings), so a fresh machine
has them, and the system's own where it has a PostgreSQL installed (Debian's
/usr/lib/postgresql/<version>/bin: the 15 this machine's server runs). PostgreSQL will not run
as root: as root, the clusters belong to pgserver's own user. Both listen on 127.0.0.1 only, on
free ports, in a folder of their own removed at the end.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
from pgserver._commands import POSTGRES_BIN_PATH

from project.devservices import free_port

DATABASE = "importbeat"


def binaries() -> dict[str, Path]:
    """The PostgreSQL binaries to run the servers with, by a name for the test's id."""
    found = {"pgserver": POSTGRES_BIN_PATH}
    for pg_ctl in sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl")):
        found[f"system-{pg_ctl.parent.parent.name}"] = pg_ctl.parent
    return found


class Cluster:
    """One PostgreSQL data folder and the server on it."""

    def __init__(self, folder: Path, port: int, user: str | None, bin_dir: Path) -> None:
        self.folder, self.port, self.user, self.bin_dir = folder, port, user, bin_dir

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{DATABASE}"

    def start(self) -> None:
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories=''"
        self.program("pg_ctl", "-D", self.folder, "-l", self.folder / "server.log", "-o", options,
                  "-w", "-t", "60", "start")  # fmt: skip

    def stop(self) -> None:
        with contextlib.suppress(RuntimeError):
            self.program("pg_ctl", "-D", self.folder, "-m", "immediate", "-w", "stop")

    def promote(self) -> None:
        """End recovery: the standby becomes a primary, as a failover does."""
        self.program("pg_ctl", "-D", self.folder, "-w", "-t", "60", "promote")

    def query(self, sql: str, *params: object) -> list[tuple]:
        with psycopg.connect(self.url, autocommit=True) as conn:
            return conn.execute(sql, params).fetchall()

    def initdb(self) -> None:
        """A new cluster in its folder: trust on every connection, `postgres` its superuser."""
        self.program("initdb", "-D", self.folder, "-U", "postgres", "--auth=trust",
                     "--encoding=utf8")  # fmt: skip

    def program(self, program: str, *args: object) -> None:
        _run(self.bin_dir / program, *args, user=self.user)

    def log(self) -> str:
        path = self.folder / "server.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""


@contextlib.contextmanager
def primary_and_standby(
    prepare: Callable[[Cluster], None], bin_dir: Path = POSTGRES_BIN_PATH
) -> Iterator[tuple[Cluster, Cluster]]:
    """A primary with the database DATABASE, `prepare(primary)` run on it (migrations, the
    rows a test needs), then a hot standby copied from it with pg_basebackup and streaming.
    Both are stopped, and their folder removed, at the end."""
    user = _cluster_user()
    home = Path(tempfile.mkdtemp(prefix="importbeat-standby-"))
    primary = Cluster(home / "primary", free_port(), user, bin_dir)
    standby = Cluster(home / "standby", free_port(), user, bin_dir)
    try:
        if user is not None:
            shutil.chown(home, user, user)
        primary.initdb()
        primary.start()
        at_primary = ["-h", "127.0.0.1", "-p", primary.port, "-U", "postgres"]
        primary.program("createdb", *at_primary, DATABASE)
        prepare(primary)
        primary.program("pg_basebackup", "-D", standby.folder, *at_primary, "-R", "-X", "stream",
                        "-c", "fast")  # fmt: skip
        standby.start()
        yield primary, standby
    finally:
        standby.stop()
        primary.stop()
        shutil.rmtree(home, ignore_errors=True)


def _cluster_user() -> str | None:
    """Who runs the servers: pgserver's user as root (PostgreSQL refuses root), else us."""
    if os.geteuid() != 0:
        return None
    import stat

    from pgserver.utils import (
        ensure_folder_permissions,
        ensure_prefix_permissions,
        ensure_user_exists,
    )

    # As pgserver does for its own server: the binaries readable and runnable by its user.
    ensure_prefix_permissions(POSTGRES_BIN_PATH)
    readable = stat.S_IRGRP | stat.S_IROTH
    ensure_folder_permissions(POSTGRES_BIN_PATH, stat.S_IXGRP | stat.S_IXOTH | readable)
    ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", readable)
    return ensure_user_exists("pgserver").pw_name


def _run(program: Path, *args: object, user: str | None = None) -> None:
    done = subprocess.run(
        [str(program), *map(str, args)],
        user=user,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode:
        raise RuntimeError(f"{program.name} failed ({done.returncode}): {done.stdout}{done.stderr}")
