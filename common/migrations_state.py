"""A database whose schema is behind the code, said as such.

In a rolling upgrade the new release's processes can start before `migrate` has run (compose
starts them beside its migrate service; an operator restarts the workers first). A worker then
took each run's message, failed it on a missing column, and acknowledged it: the run stayed
`queued` with nothing behind it. Web answered 500 on every import while `/api/v1/health` said
the database was fine. Shared by the worker's start-up check, the health check and beat.
"""

from __future__ import annotations

from typing import Any

import psycopg.errors
from django.db import DatabaseError, connection
from django.db.migrations.loader import MigrationLoader

from common import error_words

SHOWN = 5


def unapplied(cursor: Any) -> list[str]:
    """The latest migration of each app that the database has not applied ("app.name"), by a
    cursor of either kind (Django's or psycopg's). The migrations on disk are read without a
    connection: the worker's parent process checks on a connection of its own."""
    cursor.execute("SELECT to_regclass('django_migrations') IS NOT NULL")
    applied: set[tuple[str, str]] = set()
    if cursor.fetchone()[0]:
        cursor.execute("SELECT app, name FROM django_migrations")
        applied = {(app, name) for app, name in cursor.fetchall()}
    latest = MigrationLoader(None, ignore_no_migrations=True).graph.leaf_nodes()
    return sorted(f"{app}.{name}" for app, name in latest if (app, name) not in applied)


def words(place: str, missing: list[str]) -> str:
    shown = ", ".join(missing[:SHOWN]) + (" …" if len(missing) > SHOWN else "")
    return (
        f"{place} lacks migrations of this release ({shown}): run `python manage.py migrate` "
        "first (`make manage ARGS=migrate`; compose runs its migrate service)"
    )


def behind(error: BaseException) -> str | None:
    """`words` for a statement that failed on a table or a column missing because this
    process's database lacks migrations of this release; None otherwise (a missing column of a
    migrated database is a bug). Asked on Django's connection."""
    undefined = (psycopg.errors.UndefinedColumn, psycopg.errors.UndefinedTable)
    if not any(isinstance(link, undefined) for link in error_words.chain(error)):
        return None
    try:
        with connection.cursor() as cursor:
            missing = unapplied(cursor)
    except DatabaseError:
        return None
    return words(error_words.database_place(connection.settings_dict), missing) if missing else None
