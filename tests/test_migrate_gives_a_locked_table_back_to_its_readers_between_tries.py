"""`migrate` behind a transaction that holds a table it alters (a worker's merge holds its
import's table for as long as it merges) waits at most a second for the lock, gives the table
back to its readers, and tries again after a pause; after its last try it fails in words naming
the migration, the statement and the session in a transaction. It waited for as long as the
transaction lasted, and every reader of the table (beat's dispatch, the API, workers' claims)
queued behind it, for the rest of the merge (deploy hunt: readers waited 6.8 s behind a
1,500,000-row merge).

The migration is 0036's reverse (its ALTER TABLE of the imports' table takes the lock that
applying it takes), run as compose's migrate service runs it; a transaction that read the
imports' table stands for the merge.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time

import psycopg
import pytest
from django.core.management import call_command
from django.db import connection

from tests import conftest
from tests.conftest import BASE_DIR, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

BACK_TO = "0035_database_defaults_for_the_previous_release"
READ = "SELECT id FROM schedules_scheduledimport ORDER BY id LIMIT 1"
ALTER_WAITING = """
SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()
AND wait_event_type = 'Lock' AND query LIKE 'ALTER TABLE "schedules_scheduledimport"%%'
"""


def _connect(**extra: str) -> psycopg.Connection:
    params = connection.get_connection_params()
    keys = ("dbname", "user", "password", "host", "port")
    return psycopg.connect(**{k: params[k] for k in keys if k in params}, autocommit=True, **extra)


def _migrate(*args: str) -> subprocess.Popen:
    env = {**os.environ, "DATABASE_URL": conftest.test_database_url(), "DJANGO_DEBUG": "1"}
    return subprocess.Popen(
        [sys.executable, "manage.py", "migrate", "schedules", BACK_TO, "--noinput", *args],
        cwd=BASE_DIR, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _alter_waiting() -> bool:
    with _connect() as session:
        return bool(session.execute(ALTER_WAITING).fetchone()[0])


def _applied(name: str) -> bool:
    with _connect() as session:
        return bool(
            session.execute(
                "SELECT 1 FROM django_migrations WHERE app = 'schedules' AND name = %s", [name]
            ).fetchone()
        )


@pytest.fixture
def merge() -> psycopg.Connection:
    """A transaction holding the imports' table, as a merge in progress holds it."""
    with _connect(application_name="a-long-merge") as holder:
        holder.execute("BEGIN")
        holder.execute(READ)
        yield holder
    connection.close()
    call_command("migrate", verbosity=0)


def test_migrate_behind_a_transaction_lets_the_tables_readers_by_and_tries_again(merge):
    # Given migrate queued behind the merge for the imports' table
    migrate = _migrate("-v0")
    wait_for(_alter_waiting, 60, interval=0.02, what="migrate's ALTER to wait")
    waiting_since = time.monotonic()

    # When the imports' table is read meanwhile, and the merge ends after 3 s
    waits: list[float] = []
    ending = threading.Timer(3.0, lambda: merge.execute("COMMIT"))
    ending.start()
    try:
        with _connect() as reader:
            while migrate.poll() is None and time.monotonic() - waiting_since < 60:
                started = time.monotonic()
                reader.execute(READ)
                waits.append(time.monotonic() - started)
                time.sleep(0.05)
        _, stderr = migrate.communicate(timeout=60)
    finally:
        ending.join()
        if migrate.poll() is None:
            migrate.kill()

    # Then no read waited behind it more than its second's wait, and it applied once the
    # merge was over
    assert max(waits) < 1.6, f"a reader waited {max(waits):.1f} s\n{stderr}"
    assert migrate.returncode == 0, stderr
    assert "waited 1.000 s for a lock at `ALTER TABLE" in stderr, stderr
    assert "trying again in 5 s (try 2 of 36)" in stderr, stderr
    assert not _applied("0036_import_missed_while_late")


def test_migrate_behind_a_transaction_after_its_last_try_says_who_holds_it_up(merge):
    migrate = _migrate("-v0", "--lock-timeout", "0.3", "--lock-pause", "0.2", "--lock-tries", "2")

    _, stderr = migrate.communicate(timeout=60)

    assert migrate.returncode == 1, stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith(
        "CommandError: schedules.0036_import_missed_while_late waited 300 ms for a lock at "
        '`ALTER TABLE "schedules_scheduledimport" '
    ), last
    assert "(in a transaction longer than that: pid " in last, last
    assert "(a-long-merge, idle in transaction for " in last, last
    assert "at each of 2 tries: run migrate again once they have ended" in last, last
    # ... and the migration is still applied: its transaction rolled back whole
    assert _applied("0036_import_missed_while_late")


def test_a_lock_timeout_of_0_waits_as_long_as_it_takes(merge):
    # Regression (review): 0 waited 1 ms at each try, where PostgreSQL's lock_timeout = 0,
    # which the option sets, waits without a bound; an operator asking to wait out the lock
    # got "waited 1 ms for a lock" and exit 1
    ending = threading.Timer(3.0, lambda: merge.execute("COMMIT"))
    ending.start()
    try:
        migrate = _migrate("-v0", "--lock-timeout", "0", "--lock-pause", "0.2", "--lock-tries", "2")
        _, stderr = migrate.communicate(timeout=60)
    finally:
        ending.join()

    assert migrate.returncode == 0, stderr
    assert "waited" not in stderr, stderr


@pytest.mark.parametrize(
    ("option", "value", "words"),
    [("--lock-timeout", "-1", "--lock-timeout must be 0 (no bound) or more seconds"),
     ("--lock-timeout", "inf", "at most 2,147,483 (PostgreSQL's longest)"),
     ("--lock-timeout", "3000000", "at most 2,147,483 (PostgreSQL's longest)"),
     ("--lock-pause", "nan", "--lock-pause must be 0 or more seconds"),
     ("--lock-pause", "-1", "--lock-pause must be 0 or more seconds"),
     ("--lock-tries", "0", "--lock-tries must be 1 or more")],
)  # fmt: skip
def test_values_that_cannot_work_are_refused_in_words(option, value, words):
    # (a negative pause, and a timeout past PostgreSQL's longest, ended in a traceback; 0 tries
    # meant 1)
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match=re.escape(words)):
        call_command("migrate", "--noinput", option, value, verbosity=0)
