"""Django's `migrate`, bounded in how long it waits for a table's lock: compose's migrate
service and `make run` both run it (`python manage.py migrate`).

The previous release's web, workers and beat run on while `migrate` runs (README "Upgrading").
A migration that alters a table asks for its ACCESS EXCLUSIVE lock and waits behind whatever
holds the table (a worker's merge holds its import's and dataset's tables for as long as it
merges: minutes for a big file), and every statement on that table queues behind the waiting
ALTER: beat could not dispatch, the API stalled, workers could not claim, for the rest of the
merge. Each statement here waits at most `--lock-timeout` for a lock; a migration that waited
that long is rolled back (a non-atomic one stops at that statement) and tried again after
`--lock-pause`, so the others get the table back between tries; after `--lock-tries` it fails,
naming the migration, the statement and the sessions in a transaction longer than the wait.

A concurrent index build or drop (CREATE/DROP INDEX CONCURRENTLY) waits without bound: its
waits block no one, and a cancelled build's work is lost (and its index left invalid).
"""

from __future__ import annotations

import math
import re
import time
from typing import Any

from django.core.management.base import CommandError
from django.core.management.commands import migrate
from django.db import DatabaseError, OperationalError, connections

from common import error_words
from schedules.display import duration, session

LOCK_TIMEOUT_SECONDS = 1.0
LOCK_PAUSE_SECONDS = 5.0
LOCK_TRIES = 36

# The sessions that may hold what a statement waited for: those in a transaction (or a
# statement) older than the wait.
LONG_TRANSACTIONS = """
SELECT pid, coalesce(nullif(application_name, ''), usename), state,
       (extract(epoch FROM now() - coalesce(xact_start, query_start)) * 1000)::bigint,
       left(regexp_replace(query, '\\s+', ' ', 'g'), 160)
FROM pg_stat_activity
WHERE pid <> pg_backend_pid() AND datname = current_database()
  AND coalesce(xact_start, query_start) < now() - make_interval(secs => %s)
  AND state <> 'idle'
ORDER BY coalesce(xact_start, query_start)
LIMIT 3
"""


# lock_timeout is kept in milliseconds in a 32-bit integer: longer was a traceback.
LONGEST_LOCK_TIMEOUT_SECONDS = 2_147_483


class Command(migrate.Command):
    help = (
        f"{migrate.Command.help} Each statement waits at most --lock-timeout for a lock; a "
        "migration that waited that long is tried again after --lock-pause, --lock-tries "
        "times in all."
    )

    def add_arguments(self, parser) -> None:
        super().add_arguments(parser)
        parser.add_argument(
            "--lock-timeout", type=float, default=LOCK_TIMEOUT_SECONDS, metavar="SECONDS",
            help=f"how long a statement waits for a lock (default {LOCK_TIMEOUT_SECONDS:g}; 0: as "
            "long as it takes, as PostgreSQL's lock_timeout = 0)",
        )  # fmt: skip
        parser.add_argument(
            "--lock-pause", type=float, default=LOCK_PAUSE_SECONDS, metavar="SECONDS",
            help=f"the pause before the next try (default {LOCK_PAUSE_SECONDS:g})",
        )  # fmt: skip
        parser.add_argument(
            "--lock-tries", type=int, default=LOCK_TRIES, metavar="N",
            help=f"tries in all before migrate fails (default {LOCK_TRIES})",
        )  # fmt: skip

    def handle(self, *args: Any, **options: Any) -> None:
        connection = connections[options["database"]]
        if connection.vendor != "postgresql":
            super().handle(*args, **options)
            return
        # Refused in words: 0 waited 1 ms where PostgreSQL's 0 (which it sets) waits without a
        # bound, a negative pause ended in a traceback, and 0 tries meant 1 (review).
        if not 0 <= options["lock_timeout"] <= LONGEST_LOCK_TIMEOUT_SECONDS:
            raise CommandError(
                "--lock-timeout must be 0 (no bound) or more seconds, at most "
                f"{LONGEST_LOCK_TIMEOUT_SECONDS:,} (PostgreSQL's longest)"
            )
        if not 0 <= options["lock_pause"] < math.inf:
            raise CommandError("--lock-pause must be 0 or more seconds")
        if options["lock_tries"] < 1:
            raise CommandError("--lock-tries must be 1 or more")
        self.lock_timeout_ms = round(options["lock_timeout"] * 1000)
        if options["lock_timeout"] > 0:
            self.lock_timeout_ms = max(1, self.lock_timeout_ms)
        tries = options["lock_tries"]
        for attempt in range(1, tries + 1):
            self.migration = self.statement = None
            try:
                with connection.cursor() as cursor:
                    cursor.execute(f"SET lock_timeout = {self.lock_timeout_ms}")
                with connection.execute_wrapper(self._statement):
                    super().handle(*args, **options)
                return
            except OperationalError as error:
                if not error_words.waited_for_a_lock(error):
                    raise
                waited = self._waited(connection)
                if attempt == tries:
                    raise CommandError(
                        f"{waited}, at each of {tries} tries: run migrate "
                        "again once they have ended (a longer --lock-timeout holds "
                        "every reader of the table as long)"
                    ) from error
                pause = options["lock_pause"]
                self.stderr.write(
                    f"migrate: {waited}: trying again in {pause:g} s (try {attempt + 1} of {tries})"
                )
                time.sleep(pause)
            finally:
                # The session's own setting back, for a caller that goes on with it (a test
                # run's, after its database was made); a connection lost stays lost.
                if connection.connection is not None:
                    try:
                        with connection.cursor() as cursor:
                            cursor.execute("RESET lock_timeout")
                    except DatabaseError:
                        pass

    def migration_progress_callback(self, action: str, migration: Any = None, fake=False) -> None:
        if action in {"apply_start", "unapply_start"}:
            self.migration = migration
        elif action in {"apply_success", "unapply_success"}:
            self.migration = None  # what follows (post_migrate's) is migrate's own
        super().migration_progress_callback(action, migration, fake)

    def _statement(self, execute, sql, params, many, context):
        """Each statement run, remembered for the words; a concurrent index build or drop
        without the bound (psycopg's own cursor: past these wrappers)."""
        self.statement = str(sql)
        if not re.search(r"\bINDEX\s+CONCURRENTLY\b", self.statement, re.IGNORECASE):
            return execute(sql, params, many, context)
        raw = context["cursor"].cursor
        raw.execute("SET lock_timeout = 0")
        try:
            return execute(sql, params, many, context)
        finally:
            raw.execute(f"SET lock_timeout = {self.lock_timeout_ms}")

    def _waited(self, connection: Any) -> str:
        """What waited, for what, and who may hold it, in words."""
        what = f"{self.migration.app_label}.{self.migration.name}" if self.migration else "migrate"
        statement = re.sub(r"\s+", " ", self.statement or "").strip()[:200]
        holders = []
        try:
            with connection.cursor() as cursor:
                cursor.execute(LONG_TRANSACTIONS, [self.lock_timeout_ms / 1000])
                holders = [session(*row) for row in cursor.fetchall()]
        except DatabaseError:
            pass
        held = f" (in a transaction longer than that: {'; '.join(holders)})" if holders else ""
        wait = duration(self.lock_timeout_ms)
        return f"{what} waited {wait} for a lock at `{statement}`{held}"
