"""Servers that take no more connections, for the tests of what importbeat says and does then.

Two kinds of PostgreSQL: a small server of the test's own, started with a max_connections of a
few and filled (a role that is no superuser then meets "remaining connection slots are reserved
…", every role "sorry, too many clients already"); and a role of the test's own on the suite's
server, whose CONNECTION LIMIT the test turns to 0 and back ("too many connections for role"),
where the processes' connections already open go on, as a full server's do.
"""

from __future__ import annotations

import contextlib
import time
import urllib.parse
from collections.abc import Iterator

import psycopg
from django.conf import settings
from django.db import connection
from pgserver._commands import POSTGRES_BIN_PATH

from tests.conftest import test_database_url, wait_for
from tests.server_settings_support import APP_ROLE, a_cluster
from tests.standby_support import Cluster


@contextlib.contextmanager
def small_server(max_connections: int = 6, reserved: int = 2) -> Iterator[Cluster]:
    """A PostgreSQL with the database importbeat and the role APP_ROLE, taking
    `max_connections` sessions, `reserved` of them for superusers; stopped and removed at the
    end."""
    conf = f"max_connections = {max_connections}\nsuperuser_reserved_connections = {reserved}\n"
    with a_cluster(POSTGRES_BIN_PATH, conf) as server:
        yield server


def app_url(server: Cluster) -> str:
    return f"postgres://{APP_ROLE}@127.0.0.1:{server.port}/importbeat"


def fill(url: str, held: list[psycopg.Connection]) -> str:
    """Open sessions at `url` into `held` until the server refuses one; its refusal."""
    for _ in range(50):
        try:
            held.append(psycopg.connect(url, autocommit=True))
        except psycopg.OperationalError as error:
            return str(error)
    raise AssertionError("the server took 50 more sessions")


class LimitedRole:
    """A role of this test's own on the suite's server, a member of the suite's user (its
    tables are that user's), and no superuser: its CONNECTION LIMIT holds."""

    def __init__(self) -> None:
        self.name = f"limited_{connection.settings_dict['NAME']}"[:63]
        parts = urllib.parse.urlsplit(test_database_url())
        host = parts.netloc.rsplit("@", 1)[-1]
        # DATABASE_URL for the processes: this test's database, as this role.
        self.url = urllib.parse.urlunsplit(parts._replace(netloc=f"{self.name}@{host}"))

    def create(self) -> None:
        self.drop()
        user = settings.DATABASES["default"]["USER"]
        self._admin(f'CREATE ROLE "{self.name}" LOGIN NOSUPERUSER INHERIT IN ROLE "{user}"')

    def limit(self, connections: int) -> None:
        """New sessions of the role beyond `connections` are refused (-1: no limit); those
        open go on."""
        self._admin(f'ALTER ROLE "{self.name}" CONNECTION LIMIT {connections}')

    def drop(self) -> None:
        if self._admin("SELECT 1 FROM pg_roles WHERE rolname = %s", self.name):
            self._admin(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s",
                self.name,
            )
            for _ in range(50):
                if not self._admin("SELECT 1 FROM pg_stat_activity WHERE usename = %s", self.name):
                    break
                time.sleep(0.1)
            self._admin(f'DROP ROLE "{self.name}"')

    def _admin(self, sql: str, *params: object) -> list[tuple]:
        # From the server's `postgres` database: the test's own is emptied meanwhile.
        own = settings.DATABASES["default"]
        with psycopg.connect(
            dbname="postgres", user=own["USER"], host=own["HOST"], port=own["PORT"] or None,
            autocommit=True,
        ) as conn:  # fmt: skip
            cursor = conn.execute(sql, params)
            return cursor.fetchall() if cursor.description else []


def a_limited_role() -> Iterator[LimitedRole]:
    """A role of this test's on the suite's server, with no limit until the test sets one,
    dropped after it (a fixture's body)."""
    role = LimitedRole()
    role.create()
    yield role
    role.drop()


def start_worker_as(processes, role: LimitedRole, **settings: str) -> None:
    """A Procfile worker on `role`'s URL that asks a new connection for each task
    (DATABASE_CONN_MAX_AGE=0, as a pool process's first, or its next after CONN_MAX_AGE), once
    it is ready."""
    processes.start("worker", DATABASE_URL=role.url, DATABASE_CONN_MAX_AGE="0", **settings)
    wait_for(lambda: "ready." in processes.logs(), 60, what="worker\n" + processes.logs())
