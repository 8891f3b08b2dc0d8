"""A management command whose database is away says so in one line and exits 1 (each printed
psycopg's traceback); `make psql` opens DATABASE_URL's database when it is set (it opened
libpq's default, another database)."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.parse

import pytest

from tests.conftest import BASE_DIR
from tests.conftest import test_database_url as database_url

NO_STACK = {"DJANGO_DEBUG": "1", "IMPORTBEAT_SERVICES_ENV": "/nonexistent/services.env"}


@pytest.mark.parametrize(
    "command", [["run_import", "1"], ["api_token", "demo"], ["seed_demo"], ["recount_records"]]
)
def test_a_command_whose_database_is_away_says_so_in_words(command, refused_port):
    away = refused_port
    result = subprocess.run(
        [sys.executable, "manage.py", *command], cwd=BASE_DIR, capture_output=True, text=True,
        env={**os.environ, **NO_STACK, "DATABASE_URL": f"postgres://postgres@127.0.0.1:{away}/ib"},
        timeout=120,
    )  # fmt: skip

    assert result.returncode == 1
    assert "Traceback" not in result.stderr, result.stderr[-600:]
    assert result.stderr.rstrip().endswith(
        f"{command[0]}: cannot reach the database ib at 127.0.0.1:{away}: connection refused"
    ), result.stderr[-600:]


@pytest.mark.django_db
def test_make_psql_opens_the_database_of_database_url():
    url = database_url()
    wanted = urllib.parse.urlsplit(url).path.rsplit("/", 1)[-1]

    result = subprocess.run(
        ["make", "--no-print-directory", "psql"], cwd=BASE_DIR,
        env={**os.environ, **NO_STACK, "DATABASE_URL": url},
        input="select 'DB=' || current_database();\n", capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip

    assert f"DB={wanted}" in result.stdout, (result.stdout[-500:], result.stderr[-500:])
