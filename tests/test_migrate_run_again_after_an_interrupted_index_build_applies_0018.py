"""Migration 0018 (non-atomic, CREATE INDEX CONCURRENTLY) interrupted while it builds
`run_in_progress_idx`, then `migrate` run again, as an operator or compose's migrate service
does after a failure: it applies 0018 and the rest. A concurrent build that is cancelled leaves
its index behind, INVALID, and 0018 unrecorded: run again, 0018 failed on `relation
"run_in_progress_idx" already exists`, at every try, so compose's web, worker and beat never
started, until someone dropped the index by hand (deploy hunt).

The build is cancelled as a server's statement_timeout cancels it (or an operator's
pg_cancel_backend): while it waits for a writer's transaction, past the commit of its index's
entry.
"""

from __future__ import annotations

import os
import subprocess
import sys

import psycopg
import pytest
from django.core.management import call_command
from django.db import connection

from tests import conftest
from tests.conftest import BASE_DIR

pytestmark = pytest.mark.django_db(transaction=True)

BUILD_0018 = (
    'CREATE INDEX CONCURRENTLY "run_in_progress_idx" ON "schedules_importrun" ("queued_at")'
    " WHERE status IN ('queued', 'running', 'retrying')"
)
INDEX = """
SELECT i.indisvalid, pg_get_indexdef(i.indexrelid) FROM pg_index i
JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname = 'run_in_progress_idx'
"""


def _connect() -> psycopg.Connection:
    params = connection.get_connection_params()
    keys = ("dbname", "user", "password", "host", "port")
    return psycopg.connect(**{k: params[k] for k in keys if k in params}, autocommit=True)


def test_migrate_run_again_after_an_interrupted_build_of_0018_applies_it():
    # Given the database before 0018, and 0018's second build cancelled while it waited for a
    # writer
    call_command("migrate", "schedules", "0017", verbosity=0)
    connection.close()
    try:
        with _connect() as writer, _connect() as build:
            writer.execute("BEGIN")
            writer.execute("LOCK TABLE schedules_importrun IN ROW EXCLUSIVE MODE")
            build.execute("SET statement_timeout = '300ms'")
            with pytest.raises(psycopg.errors.QueryCanceled):
                build.execute(BUILD_0018)
            writer.execute("ROLLBACK")
            assert build.execute(INDEX).fetchone()[0] is False  # left INVALID

        # When migrate is run again, as compose's migrate service runs it
        env = {**os.environ, "DATABASE_URL": conftest.test_database_url(), "DJANGO_DEBUG": "1"}
        result = subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput", "-v0"],
            cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=180,
        )  # fmt: skip

        # Then it applies 0018 and the rest, the index built whole
        assert result.returncode == 0, result.stderr[-1500:]
        with _connect() as session:
            valid, definition = session.execute(INDEX).fetchone()
        assert valid, definition
        assert "WHERE" in definition and "queued_at" in definition
    finally:
        # The database left whole for the next test, whatever happened above.
        with _connect() as session:
            if (left := session.execute(INDEX).fetchone()) and not left[0]:
                session.execute('DROP INDEX CONCURRENTLY IF EXISTS "run_in_progress_idx"')
        call_command("migrate", verbosity=0)
