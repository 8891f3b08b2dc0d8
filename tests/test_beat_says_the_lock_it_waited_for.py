"""Beat gives up a statement that waits for a lock within a few seconds (`lock_timeout` on its
database sessions), says who holds the lock, and dispatches once it is free.

Another session's lock on beat's tables (a migration's `ALTER TABLE` or `CREATE INDEX`, a
`LOCK TABLE`, a transaction left open) held beat's loop for as long as it lasted, without a
word: no tick dispatched, and the batch of imports beat had locked could not be edited, each
edit answered 503 once the web's statement timeout ran out."""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

import psycopg
import pytest
import redis
from django.conf import settings
from django.db import connection
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from project import beat
from project.beat import LEADER_LEASE, ImportScheduler
from project.celery import app
from schedules import dispatch
from schedules.models import ImportRun, ScheduledImport
from tests.factories import make_import

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def scheduler(monkeypatch):
    monkeypatch.setattr(beat, "LOCK_WAIT_SECONDS", 1)
    monkeypatch.setattr(dispatch, "publish_runs", lambda runs: None)
    redis.Redis.from_url(settings.REDIS_URL).delete(LEADER_LEASE)
    made = ImportScheduler(app=app)
    yield made
    made.close()
    redis.Redis.from_url(settings.REDIS_URL).delete(LEADER_LEASE)


def a_loop(scheduler: ImportScheduler, step: str = "_dispatch_imports") -> bool:
    """One step of beat's loop (its dispatch unless told), on a thread of its own (a database
    session of its own), as beat's; whether it ended within 20 s."""

    def stepping() -> None:
        try:
            getattr(scheduler, step)()
        finally:
            connection.close()

    loop = threading.Thread(target=stepping, daemon=True)
    loop.start()
    loop.join(20)
    return not loop.is_alive()


def test_beat_gives_up_a_lock_wait_says_who_holds_the_lock_and_dispatches_once_free(
    alice, scheduler, caplog
):
    # An hourly import: its next tick after the one due comes due while the test runs only at the
    # top of an hour (an import of a minute had it come due now and then)
    imp = make_import(alice, "http://127.0.0.1/p.csv", interval_seconds=3600)
    ScheduledImport.objects.filter(pk=imp.pk).update(
        next_run_at=timezone.now() - timedelta(seconds=1)
    )
    # Given another session holding a lock on the runs' table, as CREATE INDEX does
    with psycopg.connect(**connection.get_connection_params()) as holder:
        holder.execute("SET application_name = 'manage.py migrate'")
        holder.execute(f"LOCK TABLE {ImportRun._meta.db_table} IN SHARE MODE")

        # When beat's loop dispatches the due tick
        with caplog.at_level(logging.INFO, "importbeat.beat"):
            ended = a_loop(scheduler)

        # Then the loop gives the wait up, saying who holds the lock, and no run is made
        assert ended, "beat's loop waited on the lock"
        assert not ImportRun.objects.exists()
        [said] = [r.getMessage() for r in caplog.records if "lock" in r.getMessage()]
        assert said.startswith(
            "beat waited 1 s for a lock held by another session: pid "
            f"{holder.info.backend_pid} (manage.py migrate, idle in transaction for "
        ), said
        assert said.endswith(
            f"LOCK TABLE {ImportRun._meta.db_table} IN SHARE MODE); the ticks due wait, and "
            "beat tries again at each loop"
        ), said

    # And once the lock is released, the next loop dispatches the tick: one run (a tick of the
    # schedule's own grid come due meanwhile is folded into it as a skipped run)
    assert a_loop(scheduler)
    assert ImportRun.objects.filter(scheduled_import=imp).exclude(status="skipped").count() == 1


def test_a_lock_on_django_celery_beats_tables_is_said_in_one_line(scheduler, caplog):
    # Given beat's maintenance job that ran, to be saved at its next sync
    scheduler._dirty.add(next(iter(scheduler.schedule)))
    # ... and another session holding a lock on django-celery-beat's table, as a migration does
    with psycopg.connect(**connection.get_connection_params()) as holder:
        holder.execute(f"LOCK TABLE {PeriodicTask._meta.db_table} IN SHARE MODE")

        # When beat saves when its jobs last ran
        with caplog.at_level(logging.INFO):
            ended = a_loop(scheduler, step="sync")

    # Then it gives the wait up, and says so in one line without a traceback
    assert ended, "beat's sync waited on the lock"
    [said] = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert (said.getMessage(), said.exc_info) == (
        "beat cannot save when its jobs last ran: canceling statement due to lock timeout",
        None,
    )


def test_beat_gives_up_a_statement_that_runs_too_long_says_so_and_dispatches_after(
    alice, scheduler, caplog, monkeypatch
):
    monkeypatch.setattr(beat, "STATEMENT_SECONDS", 1)
    scheduler.close()  # its session's limits were set before the patch: a new session's
    connection.close()
    scheduler = ImportScheduler(app=app)
    imp = make_import(alice, "http://127.0.0.1/p.csv", interval_seconds=60)
    ScheduledImport.objects.filter(pk=imp.pk).update(
        next_run_at=timezone.now() - timedelta(seconds=1)
    )
    # Given a database on which beat's writes of runs crawl without waiting for any lock (a
    # server swapping, a stalled disk): a trigger that sleeps 30 s at each insert
    table = ImportRun._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE FUNCTION crawl() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN PERFORM pg_sleep(30); RETURN NEW; END $$"
        )
        cursor.execute(
            f"CREATE TRIGGER crawl BEFORE INSERT ON {table} FOR EACH ROW EXECUTE FUNCTION crawl()"
        )
    try:
        # When beat's loop dispatches the due tick
        with caplog.at_level(logging.INFO, "importbeat.beat"):
            ended = a_loop(scheduler)

        # Then it gives the statement up within its limit, and says so in words
        assert ended, "beat's loop waited on a statement running long"
        assert not ImportRun.objects.exists()
        [said] = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert said == (
            "beat's dispatch was cancelled by the database (canceling statement due to "
            "statement timeout; beat gives a statement 1 s): the database is slow or "
            "overloaded; the ticks due wait, and beat tries again at each loop"
        )
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP TRIGGER crawl ON {table}")
            cursor.execute("DROP FUNCTION crawl()")

    # And once the database is quick again, the next loop dispatches the tick: one run (the
    # schedule's own tick, on its minute grid, may have come due meanwhile, folded into it as
    # a skipped run: it failed so once in CI)
    assert a_loop(scheduler)
    assert ImportRun.objects.filter(scheduled_import=imp, status="queued").count() == 1
    scheduler.close()
