"""The beat scheduler: imports fire from their own indexed next tick; the rest is
django-celery-beat's database scheduler.

- Imports: every beat process, at every loop, dispatches the imports whose `next_run_at` is due
  (schedules.dispatch): runs created and next ticks advanced in one transaction per batch, the
  messages published after it, pipelined. The cost of a loop follows the due ticks, not the
  number of schedules; several beats share the work through row locks (`SKIP LOCKED`), so a
  beat that dies costs nothing but its own batch, and no tick is dispatched twice (a run is
  unique per (import, tick)). Beat sleeps until the next tick of any import is due.
- Everything else in django-celery-beat's tables (the maintenance jobs: sweep, reconciliation,
  retention) runs from the vanilla scheduler, only in the beat holding a leader lease in Redis,
  so that those jobs run once. The imports' own `PeriodicTask` rows stay in the tables for the
  admin, but this scheduler does not load them: what fires an import is schedules.ticks alone,
  the same function that lists its next runs.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import time
from contextlib import suppress
from typing import Any

import psycopg
from celery.beat import SchedulingError
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import DatabaseError, connection
from django.db.backends.signals import connection_created
from django_celery_beat.schedulers import DatabaseScheduler
from redis.exceptions import RedisError

from common import (
    database_clock,
    database_tls,
    error_words,
    migrations_state,
    read_only_database,
)
from common.leases import Lease

# The keys the health check reads too: kept beside the Redis client, which schedules may import.
from common.redis_client import LAST_TICK_KEY, LEADER_LEASE, client
from project import stop_signals

DISPATCH_TASK = "importbeat.dispatch_scheduled_import"
# Beat's statements take milliseconds. One waiting for a lock (a migration's ALTER TABLE or
# CREATE INDEX, a transaction left open) held the loop for as long as the lock lasted, without
# a word, and the batch of imports beat had locked with it: each edit of one answered 503.
LOCK_WAIT_SECONDS = 5
# And one that runs long without waiting for a lock (a server swapping, a disk stalled, a plan
# gone wrong) held it as long, without a word, while its ticks went by. A batch takes well
# under a second at 10,000 imports (tests/bench/bench_beat_scale.py).
STATEMENT_SECONDS = 30
# How long beat waits before it looks again at due imports it found locked by another session.
LOCKED_DUE_WAIT_SECONDS = 0.5

logger = logging.getLogger("importbeat.beat")


class DatabaseErrorInWords(logging.Filter):
    """django-celery-beat's database errors (its check for changed entries, its save of when
    its entries last ran) said in one line as beat's own loop says them, without the traceback.

    Beat skips django-celery-beat's tick while its own loop cannot reach the database; a
    database that went away between the two still made it log a traceback, once per outage,
    and so did a lock that only django-celery-beat's tables waited for.
    """

    WORDS = {
        "Database gave error: %r": "beat cannot reach the database: %s",
        "Database error while sync: %r": "beat cannot save when its jobs last ran: %s",
    }

    # Its INFO line at each read of the entries after a move of its change row. Every import's
    # deletion moves that row (its entry's delete signal), and a beat's start: 24 to 28 lines
    # in two minutes at 10 edits a second, which said nothing an operator can act on and hid
    # the lines that do, an edit of a job said no more than they (churn hunts). A change of
    # beat's own jobs is said instead (ImportScheduler.all_as_schedule).
    RELOADED = "DatabaseScheduler: Schedule changed."

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg == self.RELOADED:
            return False
        words = self.WORDS.get(record.msg) if isinstance(record.msg, str) else None
        if words and record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            record.msg, record.args = words, (_said(error),)
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def _said(error: BaseException) -> str:
    """PostgreSQL's own message for an error it raised, without the statement it quotes after;
    the error's text on one line for any other."""
    for link in error_words.chain(error):
        if isinstance(link, psycopg.Error) and link.diag.message_primary:
            return link.diag.message_primary
    return error_words.log_text(error)


def job_schedule_in_words(model: Any) -> str:
    """When a django-celery-beat entry (`PeriodicTask`) runs, as the admin shows its fields."""
    if model.interval_id:
        return f"every {model.interval.every} {model.interval.period}"
    if model.crontab_id:
        rule = model.crontab
        fields = (rule.minute, rule.hour, rule.day_of_month, rule.month_of_year, rule.day_of_week)
        return f"at cron '{' '.join(fields)}' ({rule.timezone})"
    if model.clocked_id:
        return f"once at {model.clocked.clocked_time.isoformat()}"
    if model.solar_id:
        return f"at {model.solar.event} ({model.solar.latitude}, {model.solar.longitude})"
    return "with no schedule"


DJANGO_CELERY_BEAT_LOGGER = "django_celery_beat.schedulers"


def say_database_errors_in_words() -> None:
    """Put DatabaseErrorInWords on django-celery-beat's logger, once per process."""
    said = logging.getLogger(DJANGO_CELERY_BEAT_LOGGER)
    if not any(isinstance(kept, DatabaseErrorInWords) for kept in said.filters):
        said.addFilter(DatabaseErrorInWords())


LOCK_WAITS = "importbeat.beat.lock_waits"


def limit_lock_waits(connection: Any, **_kwargs: Any) -> None:
    """`lock_timeout` and `statement_timeout` on a beat's database session (connected to
    connection_created)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT set_config('lock_timeout', %s, false),"
                " set_config('statement_timeout', %s, false)",
                [f"{LOCK_WAIT_SECONDS}s", f"{STATEMENT_SECONDS}s"],
            )


# Who holds a lock that beat's writes wait for: a table's, taken by a migration or a LOCK TABLE.
LOCK_HOLDERS = """
SELECT a.pid, coalesce(nullif(a.application_name, ''), a.usename), a.state,
       (extract(epoch FROM now() - coalesce(a.xact_start, a.query_start)) * 1000)::bigint,
       left(regexp_replace(a.query, '\\s+', ' ', 'g'), 200)
FROM pg_stat_activity a
WHERE a.pid <> pg_backend_pid() AND a.pid IN (
    SELECT l.pid FROM pg_locks l
    WHERE l.locktype = 'relation' AND l.granted AND l.relation = ANY(%s::regclass[])
      AND l.mode IN ('ShareLock', 'ShareRowExclusiveLock', 'ExclusiveLock', 'AccessExclusiveLock')
)
ORDER BY a.xact_start
LIMIT 3
"""


def lock_holders(tables: list[str]) -> list[str]:
    """The sessions holding a lock on `tables` that beat's writes wait for, each in words."""
    from schedules.display import session

    with connection.cursor() as cursor:
        cursor.execute(LOCK_HOLDERS, [tables])
        return [session(*row) for row in cursor.fetchall()]


def _ran_too_long(error: BaseException) -> bool:
    # statement_timeout's cancel; an operator's pg_cancel_backend reads the same to beat.
    return any(isinstance(link, psycopg.errors.QueryCanceled) for link in error_words.chain(error))


# Interval imports put in step with MIN_INTERVAL_SECONDS a loop, from beat's start.
INTERVALS_A_LOOP = 200

# Beat's line of a Redis it cannot use is said again, with how often it was met, at most this
# often (the worker's consumer folds its repeats alike: project.worker_log.FOLD_SECONDS).
REDIS_AWAY_FOLD_SECONDS = 60.0


class RedisAway:
    """Beat's words for the Redis of REDIS_URL (its leader lease, its last tick) while it cannot
    use it: the first loop says why in error_words' words, later loops fold into one line a
    minute saying how often, and the first loop that reaches it again says so once.

    Each loop logged two lines with redis-py's own text ("beat leader lease unreachable: Error 1
    connecting to 127.0.0.1:6380. [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed:
    …", "beat cannot record its last tick: …"), twice a second with a short loop interval, and
    said nothing when Redis came back (the tls hunt).
    """

    def __init__(self, place: str) -> None:
        self.place = place
        self.since: float | None = None  # time.monotonic() of the first loop that met it
        self.words = ""
        self.said_at = 0.0
        self.folded = 0
        self.met_this_loop = False

    def loop_begins(self) -> None:
        self.met_this_loop = False

    def met(self, error: RedisError) -> None:
        """This loop could not use Redis: said unless already said (or folded) this loop."""
        if self.met_this_loop:
            return  # the lease and the last tick of one loop meet one outage
        self.met_this_loop = True
        refused = error_words.refusal(error)
        words = error_words.login_refusal(self.place, error) or (
            f"{self.place} refuses beat's writes: {refused}"
            if refused
            else f"beat cannot reach {self.place}: {error_words.reason(error)}"
        )
        now = time.monotonic()
        if self.since is None:
            self.since = now
        elif words == self.words and now - self.said_at < REDIS_AWAY_FOLD_SECONDS:
            self.folded += 1
            return
        folded = (
            f" (met {self.folded} times more in the last {now - self.said_at:.0f} s)"
            if self.folded and words == self.words
            else ""
        )
        logger.warning(
            "%s; beat's maintenance jobs wait and /health does not see beat's loop until it is"
            " back%s", words, folded,
        )  # fmt: skip
        self.words, self.said_at, self.folded = words, now, 0

    def reached(self) -> None:
        """Redis answered: said once after an outage."""
        if self.since is None or self.met_this_loop:
            return
        logger.info(
            "beat reaches %s again, after %.0f s without it", self.place,
            time.monotonic() - self.since,
        )  # fmt: skip
        self.since, self.words, self.folded = None, "", 0


def not_started(error: BaseException, words: str = "") -> None:
    """Beat started on a database it cannot reach exits saying why, in a line, as the worker
    does (project.worker_checks): django-celery-beat reads its entries at the start, and beat
    printed two tracebacks of some 1,770 lines in all ("beat raised exception <class
    'django.db.utils.OperationalError'>", then one line a character) before it exited (says
    hunt). So does one on a database without this release's tables (`words`: run migrate
    first), which printed them too (review). The error itself goes to the log; the exit status
    is 1, for a supervisor to retry."""
    words = words or error_words.unreachable(
        error_words.database_place(connection.settings_dict), error, logger
    )
    # (one line: beat's stderr is its log, where a print comes again as a WARNING)
    logger.critical("importbeat beat not started: %s", words)
    # Celery's beat catches what its scheduler raises, and prints it; leave at once.
    for stream in (sys.stdout, sys.stderr, sys.__stderr__):
        with suppress(Exception):
            stream.flush()
    os._exit(1)


class ImportScheduler(DatabaseScheduler):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        say_database_errors_in_words()
        if not kwargs.get("lazy"):
            # (celery beat's banner makes a lazy scheduler first, to name it: these notes are
            # the running one's, said once)
            # A Redis that may evict keys when full: one warning at start (the worker's too).
            from project.worker_checks import say_if_redis_may_evict

            # (REDIS_URL's Redis unreachable: beat's loop says it, once)
            say_if_redis_may_evict(said_by_the_process=("REDIS_URL",))
            # A DATABASE_URL to another host whose TLS checks nothing: one WARNING (the
            # worker's and the web's too).
            database_tls.say_if_unchecked()
        self.redis = RedisAway(error_words.broker_place(settings.REDIS_URL, "Redis"))
        connection_created.connect(limit_lock_waits, dispatch_uid=LOCK_WAITS)
        if connection.connection is not None:
            limit_lock_waits(connection)
        self.leader = Lease(
            LEADER_LEASE,
            settings.BEAT_LEADER_LEASE_SECONDS,
            f"beat-{socket.gethostname()}-{os.getpid()}",
        )
        self.is_leader = False
        self.started_at = time.monotonic()
        self.first_dispatch_logged = False
        # Interval imports put in step with MIN_INTERVAL_SECONDS (_dispatch_imports, once).
        self.intervals_in_step = False
        # The last loop could not reach the database, or write to it (_dispatch_imports).
        self.database_away = False
        # The maintenance entries the database did not take (update_from_dict), by name.
        self.not_installed: dict[str, dict[str, Any]] = {}
        # Beat's jobs as it last read them, each's schedule in words (all_as_schedule); None
        # until the leader's first read.
        self.jobs: dict[str, str] | None = None
        try:
            super().__init__(*args, **kwargs)
        except DatabaseError as error:
            if behind := migrations_state.behind(error):
                not_started(error, behind)
            if kwargs.get("lazy") or connection.connection is not None:
                raise  # connected: an error of its own, said with its traceback
            not_started(error)

    def update_from_dict(self, mapping: dict[str, dict[str, Any]]) -> None:
        """django-celery-beat's, each entry written to its table, but an entry the database
        does not take (away, or taking no writes) is said in one line and installed again at
        the next loops (_install_the_rest). django-celery-beat logged a traceback for each and
        never tried again: a beat started on a standby never ran the sweep, reconciliation and
        retention after the standby's promotion, until it was restarted."""
        entries = {}
        for name, fields in mapping.items():
            try:
                entry = self._installed(name, fields)
            except DatabaseError as error:
                if name not in self.not_installed:
                    what = "takes no writes" if read_only_database.refused(error) else "failed"
                    logger.warning(
                        "beat cannot install its job %s: the database %s (%s); it tries again"
                        " at each loop", name, what, error_words.log_text(error),
                    )  # fmt: skip
                self.not_installed[name] = fields
                continue
            self.not_installed.pop(name, None)
            if entry.model.enabled:
                entries[name] = entry
        self.schedule.update(entries)

    def _installed(self, name: str, fields: dict[str, Any]):
        """django-celery-beat's entry `name`, written to its table. Two beats starting at once
        both find it missing and create it: the second's create is refused as a duplicate name
        (a ValidationError, which stopped that beat with a traceback, so no standby was left
        to take over). It is there then, made by the other beat, and read as it is."""
        try:
            return self.Entry.from_entry(name, app=self.app, **fields)
        except ValidationError:
            return self.Entry.from_entry(name, app=self.app, **fields)

    def _install_the_rest(self) -> None:
        """Install the entries the database did not take before, once it takes them."""
        missing = sorted(self.not_installed)
        with suppress(DatabaseError):
            connection.close()  # a session opened while the server took no writes may keep so
        self.update_from_dict(dict(self.not_installed))
        if not self.not_installed:
            logger.info("beat installed its jobs %s", ", ".join(missing))
            # Read the entries again, as a new leader does (the line above said what changed).
            self._initial_read = True
            self._heap = None
            self.jobs = None

    def enabled_models_qs(self):
        """The enabled entries but the imports', which fire from `next_run_at`
        (schedules.dispatch), never from their PeriodicTask.

        All of them, without django-celery-beat's window of hours: it leaves out the crontab
        entries not due within two hours of now by a CASE of one branch per crontab row, built
        in Python at each read. The imports' rows counted there too, one per rule: over
        10,000 imports of distinct rules one read took 22 to 38 s (over a minute in a busy
        beat), in beat's loop, at its start (first dispatch after 110 s), at every move of the
        change row (an edit that made or left a rule, a deletion) and every five minutes
        besides, and no tick was dispatched meanwhile: ticks 85 to 172 s late (p95), 800 of
        1,840 missed in two minutes (tests/bench/bench_beat_under_edits.py). The entries read
        here are a handful of jobs.
        """
        return self.Model.objects.enabled().exclude(task=DISPATCH_TASK)

    def all_as_schedule(self) -> dict[str, Any]:
        """django-celery-beat's read of the entries, and a line for each job that changed since
        the last read (added, rescheduled, gone), said in place of the library's "Schedule
        changed." at each read: an operator's edit of a job in the admin shows in beat's log as
        what beat runs now, and the imports' edits, which move the same change row, say
        nothing."""
        entries = super().all_as_schedule()
        jobs = {name: job_schedule_in_words(entry.model) for name, entry in entries.items()}
        before, self.jobs = self.jobs, jobs
        # Said by the leader, against its first read (_lead): not the reads while beat installs
        # them at its start.
        if before is not None and self.is_leader:
            for name in sorted(before.keys() | jobs.keys()):
                if name not in jobs:
                    logger.info("beat no longer runs its job %s (disabled or deleted)", name)
                elif name not in before:
                    logger.info("beat runs its job %s %s", name, jobs[name])
                elif jobs[name] != before[name]:
                    logger.info(
                        "beat runs its job %s %s now (was %s)", name, jobs[name], before[name]
                    )
        return entries

    def apply_entry(self, entry: Any, producer: Any = None) -> None:
        """Celery's, but a job the broker does not take (full, read-only, away) is one WARNING
        line in words: Celery logged "Message Error" with the stack and the chained traceback,
        about 30 lines for each of beat's jobs at each interval while Redis was full (the
        broker hunt), where everything else importbeat says of it is one line. The job is sent
        again at its next interval; any other fault is logged as Celery logs it."""
        from schedules.after_commit import BROKER_ERRORS, why_for_the_log

        logger.info("Scheduler: Sending due task %s (%s)", entry.name, entry.task)
        try:
            self.apply_async(entry, producer=producer, advance=False)
        except Exception as error:
            # The publish's own error, which the scheduler wraps (SchedulingError); a broker's
            # is that error itself (kombu wraps the client's in its own). Not any OSError met
            # on the way: a bug raised while something handled a file's OSError was said
            # "cannot reach the broker", with no traceback (review).
            raised = error.__context__ if isinstance(error, SchedulingError) else error
            if not isinstance(raised, BROKER_ERRORS):
                logger.exception("beat's job %s not sent", entry.name)
                return
            logger.warning(
                "beat's job %s not sent: %s; it is sent again at its next interval",
                entry.name, why_for_the_log(raised),
            )  # fmt: skip

    # --- the loop --------------------------------------------------------------------------

    def tick(self, *args: Any, **kwargs: Any) -> float:
        """Dispatch the due imports, run the maintenance entries if leading; sleep until due."""
        self.redis.loop_begins()
        wait = self._dispatch_imports()
        if self._lead():
            if self.database_away:
                # django-celery-beat would read its entries from the database and log a
                # traceback ("Database gave error") at every loop of the outage, which
                # _dispatch_imports has said in words; its jobs need the database anyway.
                return max(wait, 0.0)
            try:
                if self.not_installed:
                    self._install_the_rest()
                wait = min(wait, super().tick(*args, **kwargs))
            except DatabaseError as error:
                # The database went away between beat's dispatch and django-celery-beat's read
                # of its entries (`all_as_schedule`, which nothing of the library guards): the
                # error left beat's loop and beat exited, its traceback its last words (a
                # forgotten connection, CI). Said as beat's own loop says it; its entries read
                # afresh at the next loop.
                self._database_away(error)
                self._initial_read = True
                return min(wait, 5.0)
        else:
            # A standby looks again well within the lease, so a take-over is quick.
            wait = min(wait, max(settings.BEAT_LEADER_LEASE_SECONDS / 3, 0.5))
        return max(wait, 0.0)

    def _dispatch_imports(self) -> float:
        from schedules.dispatch import dispatch_due, seconds_until_due
        from schedules.models import put_intervals_in_step

        self.database_away = False
        try:
            # A stop that comes between a batch's commit and its publish waits for the publish.
            with stop_signals.held_back():
                result = dispatch_due()
            if not self.intervals_in_step:
                # From its first dispatch: an interval import planned at another
                # MIN_INTERVAL_SECONDS (changed since, for this start) fired its old tick
                # first. A few a loop (7 ms each): 10,000 at once held back its dispatch 72 s.
                # After the dispatch, and never in its way.
                done = put_intervals_in_step(INTERVALS_A_LOOP, INTERVALS_A_LOOP, skip_locked=True)
                self.intervals_in_step = done < INTERVALS_A_LOOP
            wait = seconds_until_due(self.max_interval)
            if not wait and not result.imports:
                # Due, yet nothing taken: the due imports are locked by someone else (an edit, a
                # cancel, another beat's batch). A wait of 0 looped at once: 3,600 transactions
                # and a core's worth of CPU in 5 s of a lock held.
                wait = LOCKED_DUE_WAIT_SECONDS
        except DatabaseError as error:
            if error_words.waited_for_a_lock(error):
                self._say_the_lock_it_waited_for()
            elif _ran_too_long(error):
                self._say_it_ran_too_long(error)
            else:
                # The database is away, or takes no writes (a standby, read-only
                # transactions): nothing can be dispatched; try again shortly, on a new
                # connection.
                self._database_away(error)
            return min(self.max_interval, 5.0)
        if result.runs and not self.first_dispatch_logged:
            self.first_dispatch_logged = True
            logger.info(
                "beat dispatched its first runs after %.2fs", time.monotonic() - self.started_at
            )
        if result.runs or result.missed:
            logger.info(
                "beat dispatched runs=%s imports=%s missed_ticks=%s",
                result.runs, result.imports, result.missed,
            )  # fmt: skip
        self._stamp_last_tick()
        return wait

    def _database_away(self, error: DatabaseError) -> None:
        self.database_away = True
        if behind := migrations_state.behind(error):
            logger.warning("beat cannot dispatch: %s", behind)
        else:
            what = "write to" if read_only_database.refused(error) else "reach"
            logger.warning("beat cannot %s the database: %s", what, error)
        # A new one for sure: close_old_connections keeps a session that still answers, and
        # one opened while the server was read-only may stay read-only.
        with suppress(DatabaseError):
            connection.close()

    def _say_the_lock_it_waited_for(self) -> None:
        from schedules.models import ImportRun, ScheduledImport

        self.database_away = True  # the maintenance entries would wait for it as well
        try:
            holders = lock_holders([ImportRun._meta.db_table, ScheduledImport._meta.db_table])
        except DatabaseError:
            holders = []
        logger.warning(
            "beat waited %s s for a lock held by another session%s; the ticks due wait, and "
            "beat tries again at each loop",
            LOCK_WAIT_SECONDS,
            f": {' and '.join(holders)}" if holders else " (a row's, or one released since)",
        )  # fmt: skip

    def _say_it_ran_too_long(self, error: DatabaseError) -> None:
        self.database_away = True  # the maintenance entries would wait as long
        logger.warning(
            "beat's dispatch was cancelled by the database (%s; beat gives a statement %s s):"
            " the database is slow or overloaded; the ticks due wait, and beat tries again at"
            " each loop",
            _said(error), STATEMENT_SECONDS,
        )  # fmt: skip
        with suppress(DatabaseError):
            connection.close()

    def _stamp_last_tick(self) -> None:
        try:
            # In the database's time, with this host's offset from it: health ages the loop
            # by the database's time too, and says when beat's clock is off. Read strictly:
            # a connection the network forgot held beat here for 30 s, and the clock's usual
            # fallback to the last offset known said nothing of it.
            offset = database_clock.offset(strict=True)
        except DatabaseError as error:
            self._database_away(error)
            offset = database_clock.known_offset() or 0.0
        try:
            client().set(LAST_TICK_KEY, f"{time.time() + offset:.3f} {offset:.3f}")
        except RedisError as error:
            self.redis.met(error)  # its last tick is not recorded
            return
        self.redis.reached()

    # --- leadership of the maintenance entries --------------------------------------------

    def _lead(self) -> bool:
        try:
            held = self.leader.renew() if self.is_leader else self.leader.acquire()
        except RedisError as error:
            self.redis.met(error)  # no lease: the maintenance jobs wait
            return False
        self.redis.reached()
        if held and not self.is_leader:
            logger.info("beat became the leader token=%s", self.leader.token)
            self.is_leader = True
            # Reload the entries: a standby's copy may be stale. No per-entry write. What it
            # reads is what beat runs from now: later reads say their changes against it.
            self._initial_read = True
            self._heap = None
            self.jobs = None
            # The heap is built from that read, once. A standby's reads (its start, the
            # other beat's) left the library's "rebuild the heap" mark set, and a change row
            # left as of them read the entries again in the same loop: the next loop rebuilt
            # the heap from entries that had not run, and each job due at the take-over was
            # sent twice, 80 ms apart (churn2 hunt). (A database error is said in words.)
            self._heap_invalidated = False
            self.schedule_changed()
        elif not held and self.is_leader:
            logger.warning("beat lost the leader lease to another beat")
            self.is_leader = False
        return held

    def close(self) -> None:
        super().close()
        # A process that goes on without its scheduler (a test) has its sessions as they were.
        connection_created.disconnect(dispatch_uid=LOCK_WAITS)
        if connection.connection is not None:
            with suppress(DatabaseError), connection.cursor() as cursor:
                cursor.execute("RESET lock_timeout")
                cursor.execute("RESET statement_timeout")
        if self.is_leader:
            self.leader.release()
            self.is_leader = False
