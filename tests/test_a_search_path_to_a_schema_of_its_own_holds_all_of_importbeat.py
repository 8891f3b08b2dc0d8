"""A database shared by tenants, each application in a schema of its own: DATABASE_URL names it
(`?options=-csearch_path%3Dimportbeat`, or `ALTER ROLE … SET search_path`). Every table,
migration, staging table and hand-written statement of importbeat lands in that schema and
works there: none names `public`. A search_path whose schema was not created yet failed
`migrate` with Django's "Unable to create the django_migrations table (no schema has been
selected to create in)"; every process now refuses such a connection in words naming the
setting (common/postgres.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest
from django.db import connection

from tests.conftest import BASE_DIR, wait_for
from tests.factories import PRODUCTS_CSV
from tests.reliability import FAST
from tests.test_reliability_disk_full import superuser_session

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]

SCHEMA = "importbeat"


@contextmanager
def a_database_of_its_own(schema: str | None) -> Iterator[tuple[str, psycopg.Connection]]:
    """A new database (dropped at the end), with `schema` created in it unless None: the URL
    whose search_path names SCHEMA, and a session of it that reads every schema."""
    name = f"test_search_path_{os.getpid()}"
    with superuser_session() as superuser:
        superuser.execute(f'CREATE DATABASE "{name}"')
    parts = urllib.parse.urlsplit(os.environ["DATABASE_URL"])
    head = parts.path.rsplit("/", 1)[0]
    query = "&".join(filter(None, [parts.query, f"options=-csearch_path%3D{SCHEMA}"]))
    url = urllib.parse.urlunsplit(parts._replace(path=f"{head}/{name}", query=query))
    params = {**connection.get_connection_params(), "dbname": name}
    params.pop("cursor_factory", None)
    params.pop("context", None)
    try:
        with psycopg.connect(**params, autocommit=True) as session:
            if schema:
                session.execute(f"CREATE SCHEMA {schema}")
            yield url, session
    finally:
        with superuser_session() as superuser:
            superuser.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def manage(processes, url: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=BASE_DIR,
        env=processes.env(DATABASE_URL=url),
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_migrate_a_worker_and_beat_keep_everything_in_the_schema_search_path_names(
    csv_server, processes
):
    source = csv_server.serve("/p.csv", PRODUCTS_CSV)
    with a_database_of_its_own(SCHEMA) as (url, session):
        # Given a database whose search_path for importbeat names its own schema, migrated
        assert manage(processes, url, "migrate", "--no-input").returncode == 0
        created = manage(
            processes, url, "shell", "-c",
            "from django.contrib.auth import get_user_model; from tests.factories import "
            "make_import; alice = get_user_model().objects.create_user('alice'); "
            f"make_import(alice, {source!r}, schedule_type='interval', interval_seconds=1, "
            "mode='sync')",
        )  # fmt: skip
        assert created.returncode == 0, created.stderr

        # When a worker and beat run alice's import on its schedule
        processes.start("worker", DATABASE_URL=url, **FAST)
        processes.start("beat", DATABASE_URL=url, **FAST)
        runs = f"SELECT count(*) FROM {SCHEMA}.schedules_importrun WHERE status = 'succeeded'"
        wait_for(
            lambda: session.execute(runs).fetchone()[0] >= 2,
            60,
            what="two scheduled runs\n" + processes.logs(),
        )
        processes.stop_all()

        # Then its rows landed in that schema, and nothing in public
        records = session.execute(f"SELECT count(*) FROM {SCHEMA}.schedules_record").fetchone()
        in_public = session.execute(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = 'public'"
        ).fetchone()
    assert (records, in_public) == ((3,), (0,))
    assert "Traceback" not in processes.log_of("worker") + processes.log_of("beat")


def test_migrate_on_a_search_path_whose_schema_is_not_there_says_so(processes):
    with a_database_of_its_own(None) as (url, _session):
        # When migrate runs where the schema search_path names was not created
        migrated = manage(processes, url, "migrate", "--no-input")

    # Then it refuses, naming the setting and what to do
    assert migrated.returncode != 0
    assert migrated.stderr.strip().splitlines()[-1] == (
        "importbeat not started: the database's search_path (importbeat) "
        "names no schema that exists there: create the schema importbeat's tables go in "
        "(CREATE SCHEMA … AUTHORIZATION its user), or correct search_path in DATABASE_URL's "
        "options or the role's or database's settings"
    )
