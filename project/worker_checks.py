"""A worker that cannot do the work does not take it.

- At start (`worker_init`, before the worker consumes anything) the worker checks that it can
  reach the database (and that it takes writes), the broker and the Redis of REDIS_URL, and
  exits non-zero with a clear message if it cannot: a worker without its database would
  otherwise take messages and fail every one of them, and one without its run locks hand each
  back to the queue.
- While it runs, it answers the `importbeat_database` control command with whether it can reach
  its database and REDIS_URL's Redis, so that `/api/v1/health` can name a worker that answers
  pings but cannot work (schedules.api.health). It checks on a thread of its own and waits
  ANSWER_WITHIN_SECONDS for the check at most: a database that refuses answers within it, and
  one that drops packets gets the last check's answer, the next ask that check's outcome.
  Checked while asked, a database that dropped its packets held the answer for the 3 s connect
  timeout, past health's half-second wait, and health counted the worker as fine (its
  consumer, which answers, was held as long). A check under way for longer than STALE_SECONDS
  is itself the answer: the database does not answer.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import socket
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

from celery.signals import worker_init
from celery.worker.control import inspect_command

from common import (
    broker_probe,
    database_clock,
    database_tls,
    error_words,
    migrations_state,
    read_only_database,
)
from common.error_words import (
    broker_place,
    database_place,
    refused_or_unreachable,
    unreachable,
)
from common.ticker import Ticker

logger = logging.getLogger("importbeat.worker")

CONNECT_TIMEOUT_SECONDS = 3
# A check this recent is the answer; an older one is checked again first.
REFRESH_SECONDS = 2.0
# How long an answer waits for its check: within health's wait for replies (0.5 s).
ANSWER_WITHIN_SECONDS = 0.3
# A check under way this long has had no answer from the database (or Redis): said as such.
STALE_SECONDS = 3 * CONNECT_TIMEOUT_SECONDS


@dataclass(frozen=True)
class Checked:
    """The worker's last check of its database and Redis: when (time.monotonic()), and what
    was wrong, in words (None: nothing)."""

    at: float
    problem: str | None


_checked: Checked | None = None
_checking = threading.Lock()
_check_ended = threading.Event()
# When the check under way started (time.monotonic()).
_check_started = 0.0
# The worker's main process checks on a thread of its own, never on the consumer's.
_checker = Ticker("importbeat-dependency-check")
# Whether the fork under way waits holding _checking (_before_fork).
_held_for_fork = False


def _before_fork() -> None:
    """A pool process forked while the check's thread is inside libpq (its name lookup, its
    locks) could inherit them held, and hang at its first connection: a fork (a pool process
    replaced) waits for a check under way, a connect timeout and a little more at most."""
    global _held_for_fork
    _held_for_fork = _checking.acquire(timeout=CONNECT_TIMEOUT_SECONDS + 1)


def _after_fork_in_parent() -> None:
    global _held_for_fork
    if _held_for_fork:
        _held_for_fork = False
        _checking.release()


def _after_fork_in_child() -> None:
    global _checking, _held_for_fork
    # A pool process never checks; the lock it inherited is its parent's.
    _checking, _held_for_fork = threading.Lock(), False


os.register_at_fork(
    before=_before_fork,
    after_in_parent=_after_fork_in_parent,
    after_in_child=_after_fork_in_child,
)


def database_problem() -> str | None:
    """None if the database answers and takes writes, else what is wrong, in words.

    A connection of its own, closed at once: the worker's parent process must not keep a
    Django connection that its forked pool processes would inherit.
    """
    import psycopg
    from django.db import connections

    params = connections["default"].get_connection_params()
    params["connect_timeout"] = CONNECT_TIMEOUT_SECONDS
    place = database_place(connections["default"].settings_dict)
    try:
        with psycopg.connect(**params) as conn, conn.cursor() as cursor:
            refusal = read_only_database.reason(cursor)
            # Said in the worker's log at its start when this host's clock is off.
            database_clock.measure(cursor)
            missing = [] if _migrated else migrations_state.unapplied(cursor)
    except psycopg.Error as error:
        return unreachable(place, error, logger)
    if refusal:
        # A standby, or read-only transactions: each run it took would fail before it started.
        return f"{place} takes no writes: {refusal}"
    if missing:
        # Each run it took would fail on a column this release added, its message acknowledged.
        return migrations_state.words(place, missing)
    _note_migrated()
    return None


# Once the database holds this release's migrations it keeps them: not read again.
_migrated = False


def _note_migrated() -> None:
    global _migrated
    _migrated = True


def broker_problem(app: Any, hostname: str | None = None) -> str | None:
    """None if the broker answers and lets its user do what a worker named `hostname` needs,
    else what is wrong, in words (its password never)."""
    place = broker_place(app.conf.broker_write_url)
    try:
        broker_probe.probe(app, CONNECT_TIMEOUT_SECONDS, retries=2, hostname=hostname)
    except broker_probe.UserNotAllowed as error:
        # Such a worker started, said ready, and met the refusal at its first wait for a
        # message: its consumer restarted at once, again and again, some ten lines a second,
        # and took nothing (the tls hunt).
        words = f"{place} {error}"
        logger.warning("%s (%s)", words, error_words.log_text(error.__cause__ or error))
        return words
    except Exception as error:
        return refused_or_unreachable(place, error, logger)
    return None


def redis_problem() -> str | None:
    """None if the Redis of REDIS_URL answers and lets its user take and free a run lock, else
    what could not be reached or refused, and why, in words. It holds the run locks: a worker
    without it hands every run back to the queue. The broker's check covers it when they are
    one server; an operator may give each its own.

    A lock is taken, renewed and freed as a run's is (SET NX PX, then the scripts of
    common.leases): an ACL user allowed PING alone passed, the worker started, and each run it
    took went back to the queue (says hunt)."""
    from django.conf import settings
    from redis import RedisError, ResponseError

    from common import leases
    from common.redis_client import client

    place = broker_place(settings.REDIS_URL, "Redis")
    name = f"importbeat:lock:worker-check:{socket.gethostname()}:{os.getpid()}"
    try:
        client().ping()
        check = leases.Lease(name, 10, "worker-check")
        if check.acquire():
            check.renew()
            leases.free_if_held_by(name, "worker-check")
    except ResponseError as error:
        # It answered, and refused the lock: full (maxmemory, noeviction), a read-only replica,
        # or a user its ACL does not allow. Said as "cannot reach Redis: the reason is in the
        # log" of a full one, which the worker had reached (says review).
        why = error_words.refusal(error) or error_words.reason(error)
        words = f"{place} takes no run lock: {why}"
        logger.warning("%s (%s: %s)", words, type(error).__name__, error_words.log_text(error))
        return words
    except RedisError as error:
        return unreachable(place, error, logger)
    return None


@worker_init.connect
def refuse_to_start_without_dependencies(sender: Any = None, **_kwargs: Any) -> None:
    app = sender.app if sender is not None else None
    # A DATABASE_URL to another host whose TLS checks nothing: one WARNING, whatever follows.
    database_tls.say_if_unchecked()
    # The checks' own lines (each refusal in words, with the library's text) are held back:
    # the refusal is said once, below.
    with _HeldBack(logger) as held:
        broker = broker_problem(app, getattr(sender, "hostname", None)) if app else None
        problems = [
            database_problem(),
            broker,
            # The broker's server with its login, REDIS_URL's by default: what the broker's
            # check met, Redis's would meet, and the worker said one refusal twice (health3).
            None if broker and _redis_of_the_broker(app) else redis_problem(),
        ]
    problems = [problem for problem in problems if problem]
    if not problems:
        held.say(at_their_level=True)
        _note(None)
        say_if_redis_may_evict()
        return
    # The library's text, which the words could not put in words, is the reason: said. Else
    # it adds nothing to them, and goes at DEBUG (shown by a worker run with --loglevel=DEBUG).
    held.say(at_their_level=any(error_words.UNKNOWN in problem for problem in problems))
    # One line per refusal, in words. Each was said three times (a WARNING with the library's
    # text, a CRITICAL, and this line), one after the other (words5 hunt).
    refusals = [f"importbeat worker not started: {problem}" for problem in problems]
    for refusal in refusals:
        print(refusal, file=sys.stderr, flush=True)
    _say_in_the_log_file(sender, refusals)
    # Celery catches exceptions here; leave at once, before any message is consumed.
    sys.stderr.flush()
    os._exit(1)


def _say_in_the_log_file(worker: Any, refusals: list[str]) -> None:
    """The refusals, once each, in the file a worker run with --logfile logs to, as Celery's
    CRITICAL lines. Celery opens that file after worker_init (its logging is set up with the
    worker's blueprint): the worker exited 1 with its log file empty, the refusal on a stderr
    that such an operator may not keep, and a detached one (`--detach`, `celery multi`), whose
    stderr is /dev/null, said it nowhere (reviewC hunt). Without --logfile its log is stderr,
    where the lines are printed."""
    logfile = getattr(worker, "logfile", None)
    if not logfile or not isinstance(logfile, str):
        return
    from celery.utils.nodenames import node_format

    try:
        # Opened as Celery opens it, its %n/%h/%i expanded alike (celery.app.log).
        handler = logging.handlers.WatchedFileHandler(
            node_format(logfile, worker.hostname), encoding="utf-8"
        )
    except OSError as error:
        print(
            f"importbeat worker: could not write to its log file {logfile}: "
            f"{error.strerror or error}",
            file=sys.stderr,
            flush=True,
        )
        return
    handler.setFormatter(logging.Formatter(worker.app.conf.worker_log_format))
    for refusal in refusals:
        handler.handle(
            logger.makeRecord(logger.name, logging.CRITICAL, __file__, 0, refusal, (), None)
        )
    handler.close()


class _HeldBack:
    """Holds `log`'s records of this thread meanwhile, to say them after (say)."""

    def __init__(self, log: logging.Logger) -> None:
        self.log, self.thread = log, threading.get_ident()
        self.records: list[logging.LogRecord] = []

    def filter(self, record: logging.LogRecord) -> bool:
        if record.thread != self.thread:
            return True
        self.records.append(record)
        return False

    def __enter__(self) -> _HeldBack:
        self.log.addFilter(self)
        return self

    def __exit__(self, *_exc: object) -> None:
        self.log.removeFilter(self)

    def say(self, at_their_level: bool) -> None:
        """The records held, at their level, or at DEBUG (kept out unless the log shows it)."""
        for record in self.records:
            if not at_their_level:
                if not self.log.isEnabledFor(logging.DEBUG):
                    continue
                record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            self.log.handle(record)


def _redis_of_the_broker(app: Any) -> bool:
    """Whether REDIS_URL names the broker's Redis, with the same login."""
    from django.conf import settings
    from redis.connection import parse_url

    def server(url: str) -> tuple[Any, ...] | None:
        if not url.startswith(("redis://", "rediss://", "unix://")):
            return None
        try:
            parts = parse_url(url)
        except ValueError:
            return None
        keys = ("host", "port", "path", "username", "password")
        return (url.split(":", 1)[0], *(parts.get(key) for key in keys))

    theirs = server(app.conf.broker_write_url or "")
    return theirs is not None and theirs == server(settings.REDIS_URL)


def say_if_redis_may_evict(said_by_the_process: tuple[str, ...] = ()) -> None:
    """One WARNING, at a worker's or beat's start, when a Redis importbeat uses may evict keys
    when full (any maxmemory-policy but noeviction with a memory cap), or evicted some: health's
    own words (schedules.api.health.check_redis). The process starts all the same: nothing is
    lost yet, and /health, /metrics and the dashboard say it too. Before, only they did.

    A Redis it cannot reach is said here in words, once, unless it serves a setting of
    `said_by_the_process` (beat's REDIS_URL, which its loop says): before (says hunt), beat on a
    rediss:// REDIS_URL it could not use said it three times at its start, one of them health's
    log line with redis-py's text (`ConnectionError: Error 1 connecting to … [SSL:
    CERTIFICATE_VERIFY_FAILED] … (_ssl.c:1006)`).

    A Redis that answers but whose memory policy could not be read (its user may not run INFO,
    as `+@all -@dangerous` allows) is said, whatever it serves: the process's loop says nothing
    of a Redis it can use. Its line was kept out with health's (says review), and a worker or
    beat on such a Redis started without a word that whether it may evict run locks is unknown.
    """
    try:
        from schedules.api import health

        with _unlogged(health.logger) as held:
            check = health.check_redis()
    except Exception as error:  # a start-up note must never stop the start
        logger.warning("Redis's memory policy could not be read: %s", error_words.reason(error))
        return
    servers = check["servers"]
    if evicting := [s["message"] for s in servers if "message" in s and s["policy"] is not None]:
        logger.warning("%s; set maxmemory-policy noeviction", "; ".join(evicting))
    for server in servers:
        if server["policy"] is not None or _said_by_the_process(server, said_by_the_process):
            continue
        # Several servers: each one's own words; one: health's line, which names none.
        for words in [server["message"]] if "message" in server else held:
            logger.warning("%s", words)


def _said_by_the_process(server: dict[str, Any], said_by_the_process: tuple[str, ...]) -> bool:
    """Whether what kept `server` from telling its memory policy is the process's own to say:
    it serves one of `said_by_the_process` (REDIS_URL) and does not answer there."""
    if "REDIS_URL" not in set(server["for"]) & set(said_by_the_process):
        return False
    from common.redis_client import client

    try:
        client().ping()
    except Exception:  # (a start-up note: whatever keeps it from answering, its loop says)
        return True
    return False


class _unlogged:
    """Keeps `log`'s records of this thread out meanwhile: the words they hold come back in
    what the call returns, said once by the caller; those of WARNING and above are kept, in
    the list the `with` gives (what the call did not return)."""

    def __init__(self, log: logging.Logger) -> None:
        self.log, self.thread = log, threading.get_ident()
        self.held: list[str] = []

    def filter(self, record: logging.LogRecord) -> bool:
        if record.thread != self.thread:
            return True
        if record.levelno >= logging.WARNING and record.getMessage() not in self.held:
            self.held.append(record.getMessage())
        return False

    def __enter__(self) -> list[str]:
        self.log.addFilter(self)
        return self.held

    def __exit__(self, *_exc: object) -> None:
        self.log.removeFilter(self)


def _note(problem: str | None) -> Checked:
    global _checked
    # One assignment: the consumer's thread reads it whole.
    _checked = checked = Checked(time.monotonic(), problem)
    return checked


def _check() -> Checked:
    return _note(database_problem() or redis_problem())


def _check_in_the_background() -> threading.Event:
    """Start a check on the checker's thread, unless one is under way; set when it ends."""
    global _check_ended, _check_started
    if not _checking.acquire(blocking=False):
        return _check_ended
    _check_ended = ended = threading.Event()
    _check_started = time.monotonic()

    def once() -> bool:
        try:
            _check()
        finally:
            _checking.release()
            ended.set()
        return False

    _checker.every(0.0, once)
    return ended


def current_problem() -> tuple[str | None, float]:
    """What is wrong (None: nothing) as the last check found it, and how old that check is, in
    seconds: checked again first, for ANSWER_WITHIN_SECONDS at most, when older than
    REFRESH_SECONDS."""
    checked = _checked
    if checked is None or time.monotonic() - checked.at >= REFRESH_SECONDS:
        _check_in_the_background().wait(ANSWER_WITHIN_SECONDS)
        checked = _checked
    if checked is None:
        # Never checked, and the first check is slow: not known to be broken (a worker's
        # start-up check always comes first; this is a process that did not start as one).
        return None, 0.0
    age = time.monotonic() - checked.at
    under_way = time.monotonic() - _check_started
    if _checking.locked() and under_way >= STALE_SECONDS:
        return (
            f"its check of its database and Redis has had no answer for {under_way:.0f} s "
            "(a server or a network that drops packets)",
            age,
        )
    return checked.problem, age


@inspect_command()
def importbeat_database(state: Any) -> dict[str, Any]:
    """Can this worker do a run now: its database, and the Redis of its run locks."""
    problem, age = current_problem()
    answer: dict[str, Any] = {
        "ok": problem is None,
        "checked_seconds_ago": round(age, 1),
        **({"error": problem} if problem else {}),
    }
    # Measured by database_problem on its own connection: health says a worker's clock is off.
    offset = database_clock.known_offset()
    if offset is not None:
        answer["clock_offset_seconds"] = round(offset, 1)
    return answer
