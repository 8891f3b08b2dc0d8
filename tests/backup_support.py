"""An operator's pg_dump and pg_restore of the test database, with the PostgreSQL client that
pgserver ships (16: it reads the system's 15 as well as the suite's own 16, where the system's
pg_dump 15 refuses a newer server), on the URL in the form libpq takes (the suite's database
is reached through a Unix socket directory, which DATABASE_URL writes otherwise)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from django.db import connection
from pgserver._commands import POSTGRES_BIN_PATH

from project.devservices import psql_url
from tests.conftest import test_database_url


def pg_dump(*options: str) -> None:
    """pg_dump `options` of the test database."""
    _client("pg_dump", *options, psql_url(test_database_url()))


def pg_restore(*arguments: str) -> None:
    """pg_restore `arguments` into the test database."""
    _client("pg_restore", f"--dbname={psql_url(test_database_url())}", *arguments)


def backup(path: Path) -> Path:
    """The data as pg_dump takes it (sequences' values too), as SQL this connection can run."""
    pg_dump("--format=plain", "--data-only", "--inserts", "--disable-triggers", f"--file={path}")
    return path


def restore_in_this_transaction(path: Path) -> None:
    """The backup `backup` took, loaded inside the caller's transaction: what the caller does
    next in it lands at the same commit (the runs the web or beat create the moment the
    database is back)."""
    script = "\n".join(
        line for line in path.read_text().splitlines() if not line.startswith("\\")
    )  # (psql's own commands)
    with connection.cursor() as cursor:
        cursor.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        tables = ", ".join(f'"{name}"' for (name,) in cursor.fetchall())
        cursor.execute(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")
        cursor.execute(script)
        cursor.execute("RESET search_path")


def _client(program: str, *arguments: str) -> None:
    subprocess.run(
        [str(POSTGRES_BIN_PATH / program), *arguments], check=True, capture_output=True, text=True
    )
