"""Processes of this release started against a database whose migrations are behind (a
rolling upgrade where the new image's worker, web or beat start before `migrate`) say so: a
worker took each run's message, failed it on a missing column and acknowledged it (the run left
`queued`); web answered 500 on every import while /health said the database was fine; beat
said, once a second, that it could not reach a database it reached.

The database is one of our own (hunt_upgrade_*), built with this release's migrations, seeded
with an import and a queued run, then migrated back to 0031 (0032 added two columns to the
imports' table): exactly the schema the previous release left.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.parse
import uuid
from collections.abc import Iterator

import psycopg
import pytest
import requests

from project.devservices import free_port
from tests import conftest
from tests.conftest import BASE_DIR, answers, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]

BEHIND = "0031_import_last_success"

SEED = """
import json, django
django.setup()
from django.contrib.auth import get_user_model
from django.core.management import call_command
import io
from schedules import services
from schedules.models import ImportRun
user = get_user_model().objects.create_user("alice", "alice@example.com", "pw", is_staff=True)
imp = services.create_import(user, name="products", source_url="https://example.com/p.csv",
    dataset="products", key_column="sku", schedule_type="interval", interval_seconds=3600)
run = ImportRun.objects.create(scheduled_import=imp, trigger="api", triggered_by=user)
out = io.StringIO()
call_command("api_token", "alice", stdout=out)
print(json.dumps({"import": imp.pk, "run": run.pk, "token": out.getvalue().split()[-1]}))
"""


def _server_url(name: str) -> str:
    parts = urllib.parse.urlsplit(conftest.test_database_url())
    head = parts.path.rsplit("/", 1)[0]
    return urllib.parse.urlunsplit(parts._replace(path=f"{head}/{name}"))


def _connect(name: str) -> psycopg.Connection:
    """A session on the test server's database `name` (by Django's parameters: psycopg reads
    an embedded server's socket URL otherwise than Django does)."""
    from django.db import connection

    return psycopg.connect(**{**connection.get_connection_params(), "dbname": name},
                           autocommit=True)  # fmt: skip


def _name_of(url: str) -> str:
    return urllib.parse.urlsplit(url).path.rsplit("/", 1)[-1]


def _admin(sql: str) -> None:
    with _connect("postgres") as conn:
        conn.execute(sql)


def _manage(url: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "DJANGO_DEBUG": "1",
        "DJANGO_SETTINGS_MODULE": "project.settings",
    }
    return subprocess.run(
        [sys.executable, *args], cwd=BASE_DIR, env=env, capture_output=True, text=True,
        timeout=180, check=check,
    )  # fmt: skip


@pytest.fixture(scope="module")
def database_behind() -> Iterator[tuple[str, dict]]:
    """A database of the previous release's schema (migrations up to 0031) holding an import of
    alice's and a queued run of it; dropped afterwards. One for the module's tests: building it
    takes three migrations of a whole database (about 30 s on a loaded machine)."""
    name = f"hunt_upgrade_{uuid.uuid4().hex[:10]}"
    _admin(f'CREATE DATABASE "{name}"')
    url = _server_url(name)
    try:
        _manage(url, "manage.py", "migrate", "--noinput", "-v0")
        seeded = _manage(url, "-c", SEED)
        ids = json.loads(seeded.stdout.strip().splitlines()[-1])
        _manage(url, "manage.py", "migrate", "schedules", BEHIND, "--noinput", "-v0")
        yield url, ids
    finally:
        _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _run_status(url: str, run_id: int) -> str:
    with _connect(_name_of(url)) as conn:
        return conn.execute(
            "SELECT status FROM schedules_importrun WHERE id = %s", [run_id]
        ).fetchone()[0]


def test_a_worker_started_before_migrate_refuses_to_start_saying_so(database_behind, processes):
    url, _ = database_behind

    worker = processes.start("worker", DATABASE_URL=url, WORKER_NAME="ahead")

    wait_for(lambda: worker.poll() is not None, 60, what="the worker's exit\n" + processes.logs())
    assert worker.returncode != 0
    assert "lacks migrations of this release (schedules.0" in processes.log_of("worker")
    assert "run `python manage.py migrate` first" in processes.log_of("worker")


@pytest.mark.parametrize("command", ["run_import", "seed_demo"])
def test_a_command_run_before_migrate_says_so_in_one_line(database_behind, command):
    # Each printed a traceback ending in ProgrammingError, its SQL quoted.
    url, ids = database_behind
    args = [command, str(ids["import"])] if command == "run_import" else [command]

    result = _manage(url, "manage.py", *args, check=False)

    assert result.returncode == 1
    assert "Traceback" not in result.stderr and "LINE 1" not in result.stderr, result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith(f"{command}: the database {_name_of(url)} at ")
    assert "lacks migrations of this release (schedules.0" in line
    assert line.endswith("run `python manage.py migrate` first (`make manage ARGS=migrate`; "
                         "compose runs its migrate service)")  # fmt: skip


def test_a_migration_that_fails_says_its_own_error(database_behind):
    # A column of 0032 added by hand (a hotfix) makes 0032 fail: migrate said the database
    # lacked migrations and to run migrate, hiding the migration's error
    url, _ = database_behind
    with _connect(_name_of(url)) as conn:
        conn.execute("ALTER TABLE schedules_scheduledimport ADD COLUMN missed_counted_from date")
    try:
        result = _manage(url, "manage.py", "migrate", "--noinput", "-v0", check=False)
    finally:
        with _connect(_name_of(url)) as conn:
            conn.execute("ALTER TABLE schedules_scheduledimport DROP COLUMN missed_counted_from")

    assert result.returncode == 1
    assert 'column "missed_counted_from" of relation' in result.stderr
    assert "lacks migrations of this release" not in result.stderr


def test_web_started_before_migrate_is_down_on_health(database_behind, processes):
    url, ids = database_behind
    port = free_port()
    processes.start("web", DATABASE_URL=url, PORT=str(port), WEB_CONCURRENCY="1")
    base = f"http://127.0.0.1:{port}"
    wait_for(lambda: answers(base + "/api/v1/health"), 60, what="web\n" + processes.logs())

    health = requests.get(
        base + "/api/v1/health", headers={"Authorization": f"Token {ids['token']}"}, timeout=10
    )

    assert health.status_code == 503
    database = health.json()["checks"]["database"]
    assert not database["ok"] and "lacks migrations of this release" in database["error"]


def test_beat_started_before_migrate_says_so(database_behind, processes):
    # Given the import is due
    url, _ = database_behind
    with _connect(_name_of(url)) as conn:
        conn.execute("UPDATE schedules_scheduledimport SET next_run_at = now() - interval '1s'")

    processes.start("beat", DATABASE_URL=url)

    wait_for(
        lambda: (
            "beat cannot dispatch: " in processes.log_of("beat")
            and "lacks migrations of this release" in processes.log_of("beat")
        ),
        60,
        what="beat's words\n" + processes.logs(),
    )


def test_beat_started_on_a_database_without_its_tables_exits_saying_to_run_migrate(processes):
    """An empty database (compose's beat started before its migrate service ran): beat printed
    two tracebacks ending in "relation django_celery_beat_periodictask does not exist", its
    SQL quoted (review), where a database it cannot reach is said in a line."""
    name = f"hunt_empty_{uuid.uuid4().hex[:10]}"
    _admin(f'CREATE DATABASE "{name}"')
    try:
        beat = processes.start("beat", DATABASE_URL=_server_url(name))

        assert beat.wait(60) == 1
        log = processes.log_of("beat")
    finally:
        _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    said = [line.split("] ", 1)[-1] for line in log.splitlines() if "not started" in line]
    assert len(said) == 1, log[-3000:]
    assert said[0].startswith(f"importbeat beat not started: the database {name} at "), said
    assert "lacks migrations of this release" in said[0]
    assert "Traceback" not in log and "does not exist" not in log, log[-3000:]
