"""The web's statements to PostgreSQL end within gunicorn's timeout.

gunicorn's sync workers were killed by their arbiter when a request outlasted `--timeout`
without progress (a query waiting for a lock, a plan gone wrong), and the request with them.
The Procfile's workers are threaded now (gthread), and their arbiter no longer sees a request:
a stuck statement would hold its thread for ever. PostgreSQL ends it instead, after the same
time less a margin (`statement_timeout` on the web process's connections), and the request
answers 503 saying so, its thread free for the next. The margin (a second, a quarter of a
short timeout) is for the rest of the request: with `WEB_THREADS=1` gunicorn runs sync workers
again, whose arbiter kills a request that outlasts the timeout, and a statement ended exactly at
it raced the kill (a 500 and a restarted process, where the client was owed the 503). Long work
is made of short statements (an export fetches its records a chunk at a time, a deletion deletes
a range per statement), as it had to be under the sync workers' timeout.

Installed by `gunicorn.conf.py` in each web process; workers, beat and `manage.py` keep
PostgreSQL's default, where an import's statements take as long as the import's own timeout.
"""

from __future__ import annotations

from typing import Any

import psycopg
from django.db.backends.signals import connection_created

from .error_words import chain

_limit_ms: int | None = None
_timeout_seconds: float = 0


def install(timeout_seconds: float) -> None:
    """End each statement of this process's database connections within `timeout_seconds`."""
    global _limit_ms, _timeout_seconds
    _timeout_seconds = timeout_seconds
    _limit_ms = max(int(statement_limit(timeout_seconds) * 1000), 1)
    connection_created.connect(_limit, weak=False, dispatch_uid="importbeat.web_statements")


def statement_limit(timeout_seconds: float) -> float:
    """Seconds a statement may take under a request timeout of `timeout_seconds`."""
    return timeout_seconds - min(1.0, timeout_seconds / 4)


def _limit(connection: Any, **_kwargs: Any) -> None:
    if connection.vendor == "postgresql" and _limit_ms:
        with connection.cursor() as cursor:
            cursor.execute("SELECT set_config('statement_timeout', %s, false)", [f"{_limit_ms}ms"])


def timed_out(error: BaseException) -> str | None:
    """What to answer for `error` when it is a statement PostgreSQL ended on this limit."""
    if _limit_ms and any(isinstance(link, psycopg.errors.QueryCanceled) for link in chain(error)):
        return (
            f"the database did not answer within {_limit_ms / 1000:g} s (the web's timeout is "
            f"{_timeout_seconds:g} s); try again in a moment"
        )
    return None
