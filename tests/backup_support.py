"""An operator's pg_dump and pg_restore of the test database, with the PostgreSQL client that
pgserver ships (16: it reads the system's 15 as well as the suite's own 16, where the system's
pg_dump 15 refuses a newer server), on the URL in the form libpq takes (the suite's database
is reached through a Unix socket directory, which DATABASE_URL writes otherwise)."""

from __future__ import annotations

import subprocess

from pgserver._commands import POSTGRES_BIN_PATH

from project.devservices import psql_url
from tests.conftest import test_database_url


def pg_dump(*options: str) -> None:
    """pg_dump `options` of the test database."""
    _client("pg_dump", *options, psql_url(test_database_url()))


def pg_restore(*arguments: str) -> None:
    """pg_restore `arguments` into the test database."""
    _client("pg_restore", f"--dbname={psql_url(test_database_url())}", *arguments)


def _client(program: str, *arguments: str) -> None:
    subprocess.run(
        [str(POSTGRES_BIN_PATH / program), *arguments], check=True, capture_output=True, text=True
    )
