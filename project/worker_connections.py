"""A worker process keeps its database connection from one task to the next.

Celery's Django fix-up closes every connection before and after each task, so every small run
paid for a new PostgreSQL session (a backend forked, authenticated, its caches cold): about a
quarter of a 100-row run's time (tests/bench/bench_small_runs.py). Instead, the worker treats a
task as Django treats a request: before and after it, `close_old_connections` drops a connection
that errored or outlived CONN_MAX_AGE, and CONN_HEALTH_CHECKS makes the first query of the next
task check that the connection still works (a database restarted between two tasks costs a
reconnect, not a failed run). The fix-up still closes them in a freshly forked pool process, so
no child shares its parent's connection.

A worker's connection also commits asynchronously (WORKER_SYNCHRONOUS_COMMIT, default off):
PostgreSQL makes such a commit visible at once and durable a moment later (at most three
`wal_writer_delay`s, 0.6 s by default), instead of waiting for the disk at every one of a run's
bookkeeping writes (its phase, progress, heartbeat, the source it fetched, the staging tables'
catalog rows). Only a crash of the database server in that moment can lose them, and it loses
nothing else: the commits that matter ask to be durable themselves (`services.durable_commit`:
a run's rows with their counts, and its outcome), and since the log is written in order, a
durable commit also makes every commit before it durable.

And its statements may take as long as the longest run may (MAX_TIMEOUT_SECONDS), and wait
for a lock as long, whatever `statement_timeout` or `lock_timeout` the server sets for
importbeat's database or user (hardening advice: 30 s for every session): such a limit ended a
big file's COPY or merge, or a run waiting for another's hold on its dataset, which read as a
lost connection and met the same end at every retry. Each run's own time limit (Celery's, from
its import's `timeout_seconds`) bounds it instead. So for `idle_session_timeout` and
`idle_in_transaction_session_timeout`: a run whose source paused longer than those, its session
idle meanwhile, read "the run lost its connection to importbeat's database" at every attempt.
A session of a worker host that died (its transaction and locks held) is ended by the server's
TCP keepalives instead, after about two minutes (not the system's two hours).

And PostgreSQL looks every few seconds whether the process that asked a statement is still
there (`client_connection_check_interval`): a run ended by its time limit, or a pool process
killed, left its statement running on (a merge waiting for its dataset's lock waited on, up to
the 6 h above, and then took the lock).
"""

from __future__ import annotations

import signal
from contextlib import suppress
from typing import Any

import psycopg
from billiard.pool import SIG_SOFT_TIMEOUT as SOFT_TIMEOUT_SIGNAL
from billiard.pool import soft_timeout_sighandler
from celery.signals import task_postrun, task_prerun, worker_process_init
from django.conf import settings
from django.db import close_old_connections, connection
from django.db.backends.signals import connection_created

from tasks import lock_waits

# How often PostgreSQL looks whether a pool process is still there while it runs its statement.
CLIENT_CHECK_SECONDS = 2


@worker_process_init.connect
def _pool_process_started(**_kwargs: Any) -> None:
    # Pool processes only: the web, beat and `run_import` keep PostgreSQL's default.
    connection_created.connect(
        _session_settings, weak=False, dispatch_uid="importbeat.worker_session"
    )


def _session_settings(connection: Any, **_kwargs: Any) -> None:
    """The pool process's session: its commits, and its statements' time, in one statement."""
    if connection.vendor != "postgresql":
        return
    level = settings.WORKER_SYNCHRONOUS_COMMIT
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT set_config('synchronous_commit', %s, false), "
            "set_config('statement_timeout', %s, false), set_config('lock_timeout', '0', false), "
            "set_config('idle_session_timeout', '0', false), "
            "set_config('idle_in_transaction_session_timeout', '0', false), "
            "set_config('tcp_keepalives_idle', '60', false), "
            "set_config('tcp_keepalives_interval', '10', false), "
            "set_config('tcp_keepalives_count', '6', false), "
            "set_config('client_connection_check_interval', %s, false)",
            [level, f"{settings.MAX_TIMEOUT_SECONDS}s", f"{CLIENT_CHECK_SECONDS}s"],
        )
    # What services.durable_commit asks about (postgres.durable_level).
    connection.commits_asynchronously = level != "on"
    connection.session_synchronous_commit = level


@task_prerun.connect
def _before_task(**_kwargs: Any) -> None:
    _soft_time_limit_notes_lock_waits()
    close_old_connections()


def _soft_time_limit_notes_lock_waits() -> None:
    """Wrap the pool's handler of the soft time limit's signal (installed after the process's
    start-up, so looked at before each task): a run that waited for a lock notes whom, before
    the statement is given up (tasks.lock_waits)."""
    if SOFT_TIMEOUT_SIGNAL is None:
        return
    handler = signal.getsignal(SOFT_TIMEOUT_SIGNAL)
    if handler is not soft_timeout_sighandler:
        return  # ours already, or none

    def noting(signum: int, frame: Any) -> None:
        lock_waits.note()
        handler(signum, frame)

    signal.signal(SOFT_TIMEOUT_SIGNAL, noting)


@task_postrun.connect
def _after_task(**_kwargs: Any) -> None:
    _no_statement_left_running()
    close_old_connections()


def _no_statement_left_running() -> None:
    """Cancel and close a connection whose statement still runs after its task ended (a time
    limit struck while it waited for a lock): kept for the next task, the statement landed once
    the lock went, and a run's claim turned it `running` with no worker."""
    raw = connection.connection
    if raw is None or raw.info.transaction_status != psycopg.pq.TransactionStatus.ACTIVE:
        return
    with suppress(psycopg.Error, OSError):
        raw.cancel_safe(timeout=5)
    connection.close()
