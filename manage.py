#!/usr/bin/env python
"""Django's command-line utility for administrative tasks."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    from django.core.management import execute_from_command_line
    from django.db import OperationalError, ProgrammingError, connection

    try:
        execute_from_command_line(sys.argv)
    except ProgrammingError as error:
        _behind_migrations_or_raise(error)
    except OperationalError as error:
        if connection.connection is not None:
            raise  # connected: a failure of the command's own, traceback and all
        # Every command (run_import, api_token, seed_demo, migrate, ...) printed psycopg's
        # traceback for a database it could not reach; the worker and /health say it in words.
        # One line: the log's line said it again first, with the library's class and text
        # (`OperationalError: …`), which goes to DEBUG.
        import logging

        from common.error_words import database_place, log_text, reason

        words = f"cannot reach {database_place(connection.settings_dict)}: {reason(error)}"
        logging.getLogger("importbeat").debug(
            "%s (%s: %s)", words, type(error).__name__, log_text(error)
        )
        print(f"{' '.join(sys.argv[1:2]) or 'manage.py'}: {words}", file=sys.stderr)
        sys.exit(1)


# The commands that change or show migrations: their own errors are theirs (a migration that
# fails is no database "behind" its migrations).
MIGRATION_COMMANDS = {
    "migrate", "makemigrations", "sqlmigrate", "showmigrations", "squashmigrations",
}  # fmt: skip


def _behind_migrations_or_raise(error: Exception) -> None:
    """A command run on a database behind this release's migrations (a column or table of
    this release missing) says so in a line, as the worker, beat and /health do: each printed a
    traceback ending in the failed statement's SQL."""
    import psycopg.errors
    from django.db import DatabaseError, connection

    from common import migrations_state
    from common.error_words import database_place

    missing_object = isinstance(
        error.__cause__, psycopg.errors.UndefinedColumn | psycopg.errors.UndefinedTable
    )
    if not missing_object or set(sys.argv[1:2]) & MIGRATION_COMMANDS:
        raise error
    try:
        with connection.cursor() as cursor:
            missing = migrations_state.unapplied(cursor)
    except DatabaseError:
        missing = []
    if not missing:
        raise error  # the command's own, traceback and all
    words = migrations_state.words(database_place(connection.settings_dict), missing)
    print(f"{' '.join(sys.argv[1:2]) or 'manage.py'}: {words}", file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
    main()
