"""A run's rows and its outcome wait for the disk at their commit when importbeat's role or
database says `synchronous_commit = off`, as README promises whatever the settings: the
durable commit (services.durable_commit) set the session's default back, which the role's
`off` made asynchronous too (serverdefaults hunt). A role's `remote_apply`, stronger, is kept;
a worker's own bookkeeping still commits without waiting."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from django.db import connection, transaction

from project import worker_connections
from schedules import services
from tests.server_settings_support import database_setting

pytestmark = pytest.mark.django_db(transaction=True)


def synchronous_commit() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        return cursor.fetchone()[0]


@contextmanager
def a_workers_connection(settings, level: str) -> Iterator[None]:
    """This process's connection as a worker's pool process opens it with
    WORKER_SYNCHRONOUS_COMMIT = `level`; closed after."""
    settings.WORKER_SYNCHRONOUS_COMMIT = level
    connection.ensure_connection()
    try:
        worker_connections._session_settings(connection)
        yield
    finally:
        connection.close()
        vars(connection).pop("commits_asynchronously", None)


def test_a_runs_commit_waits_for_the_disk_when_the_database_says_off():
    # Given importbeat's database set to commit without waiting (a new session, as run_import's)
    with database_setting("synchronous_commit", "off"):
        connection.ensure_connection()
        assert synchronous_commit() == "off"

        # When a run's rows commit
        with transaction.atomic():
            services.durable_commit()

            # Then that transaction waits for the disk
            assert synchronous_commit() == "on"
        # And the session keeps what the database says for the rest
        assert synchronous_commit() == "off"


def test_a_worker_on_such_a_database_commits_its_bookkeeping_without_waiting_and_its_runs_with(
    settings,
):
    # Given a worker's pool process's connection on a database set to commit without waiting
    with database_setting("synchronous_commit", "off"), a_workers_connection(settings, "off"):
        # When a run's rows commit
        with transaction.atomic():
            services.durable_commit()

            # Then that transaction waits for the disk
            assert synchronous_commit() == "on"
        assert synchronous_commit() == "off"


def test_a_stronger_level_the_database_asks_for_is_kept_for_a_runs_commit(settings):
    # Given a worker's connection on a database that asks its commits to be applied on standbys
    with (
        database_setting("synchronous_commit", "remote_apply"),
        a_workers_connection(settings, "off"),
        transaction.atomic(),
    ):
        # When a run's rows commit
        services.durable_commit()

        # Then at the database's level, not a weaker one
        assert synchronous_commit() == "remote_apply"
