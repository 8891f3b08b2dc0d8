"""Django's PostgreSQL backend, which says when a connection kept from before failed its check.

With CONN_HEALTH_CHECKS Django checks a connection kept from an earlier request or task with a
`SELECT 1` before it is used again, and when that fails closes it and opens another without a
word. A connection the network forgot held the check until `tcp_user_timeout` gave it up, 30 s
(project/settings.py, DATABASE_LINK_OPTIONS): a request, a task or beat's loop that late, and
no log said why. Chosen as the ENGINE in project/settings.py.
"""

from __future__ import annotations

import logging
import time

from django.core.exceptions import ImproperlyConfigured
from django.db.backends.postgresql import base

from common import postgres
from common.error_words import UNKNOWN, log_text, reason

logger = logging.getLogger("importbeat.database")


class DatabaseWrapper(base.DatabaseWrapper):
    # Set by /health when it shut this connection's socket because the database did not answer
    # within its bound (schedules.api.health._shut_down); the next check says so in its words.
    cut_by_health = False

    def check_database_version_supported(self) -> None:
        """Django's own check, run once a process before `connection_created` is sent, refused
        a server older than 14 in its words (NotSupportedError "PostgreSQL 14 or later is
        required"), so common.postgres never said its own: the refusal is the project's."""
        try:
            postgres.refuse_unsupported(self.connection.info.server_version)
        except ImproperlyConfigured:
            self.close()
            raise

    def is_usable(self) -> bool:
        if self.connection is None:
            return False
        started = time.monotonic()
        try:
            # A psycopg cursor, bypassing Django's utilities, as Django's own check does.
            with self.connection.cursor() as cursor:
                cursor.execute("SELECT 1")
        except base.Database.Error as error:
            waited = time.monotonic() - started
            if self.cut_by_health:
                # /health's bound shut its socket (schedules.api.health): psycopg's "consuming
                # input failed: server closed the connection unexpectedly. This probably means
                # the server terminated abnormally …" sent an operator to a crash that was none.
                words = (
                    f"a database connection kept from before did not answer its check within "
                    f"{waited:.1f}s and /health cut it; a new one is opened"
                )
            else:
                why = reason(error)
                # The raw text only when no words say why: it is the log's to give then.
                why = log_text(error) if why == UNKNOWN else why
                words = (
                    f"a database connection kept from before failed its check after "
                    f"{waited:.1f}s; a new one is opened: {why}"
                )
            logger.warning("%s", words)
            logger.debug("%s (%s: %s)", words, type(error).__name__, log_text(error))
            return False
        finally:
            self.cut_by_health = False
        return True
