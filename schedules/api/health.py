"""Dependency checks behind `GET /api/v1/health`.

The database and the broker are required (503 when either is down); beat and the workers are
reported so that an operator sees a stalled scheduler or an empty cluster, but the web process
itself can still serve the API without them.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from celery import current_app as app
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.utils import timezone

from common import broker_probe, database_clock, migrations_state, read_only_database
from common.error_words import (
    broker_place,
    database_place,
    log_text,
    login_refusal,
    reason,
    refusal,
    server_address,
)
from common.said_once import SaidOnce

logger = logging.getLogger(__name__)

T = TypeVar("T")

# How long `/health` waits for each dependency. Load balancers give a health check 5 s by
# default (AWS's and Google Cloud's) and count a check that takes longer as failed, the whole
# process down, whatever it would have said. Each Redis read waited out its own socket timeout
# (5 s, and redis-py's three retries), one after another: with REDIS_URL rediss:// on a plain
# Redis, or a Redis or database that accepts connections and never answers, an anonymous
# `/health` took 10 to 60 s. Now a dependency that does not answer costs one wait per request:
# the database DATABASE_WAIT_SECONDS (libpq's connect_timeout counts whole seconds, 2 at least),
# the broker HEALTH_BROKER_TIMEOUT (2 s by default), and each Redis REDIS_WAIT_SECONDS for the
# connection and as much for its answer; a Redis that failed once in a request (or the broker's
# Redis, when it is REDIS_URL's server) is not asked again in that request. All down at once:
# about 4 s with one Redis, 2 s more when a kept database connection stops answering: its check
# is cut, then Django tries a new one (README "Health").
DATABASE_WAIT_SECONDS = 2
REDIS_WAIT_SECONDS = 1.0

# A beat loops at least every BEAT_MAX_LOOP_INTERVAL seconds (5 by default).
BEAT_STALE_SECONDS = 60


# Once the database holds this release's migrations it keeps them: not read again.
_migrated = False


def check_database() -> dict[str, Any]:
    """Does the database answer, and take writes? A standby or a server whose transactions are
    read-only answers every read and records nothing: down, in words."""
    global _migrated
    started = time.monotonic()
    try:
        with connection.cursor() as cursor:
            refused = read_only_database.reason(cursor)
            missing = [] if _migrated else migrations_state.unapplied(cursor)
    except Exception as error:
        _database_silent.set(True)
        return {"ok": False, "error": _database_problem(error)}
    if refused:
        words = f"{database_place(connection.settings_dict)} takes no writes: {refused}"
        logger.warning("%s", words)
        # The next check asks on a new session: this one may stay read-only when the server
        # takes writes again.
        connection.close()
        return {"ok": False, "error": words}
    if missing:
        # Web started before `migrate`: every import answered 500 while this said "ok".
        words = migrations_state.words(database_place(connection.settings_dict), missing)
        logger.warning("%s", words)
        return {"ok": False, "error": words}
    _migrated = True
    # This web process's host clock against the database's (common.database_clock): it says
    # so in its log when off; what it decides is timed by the database's.
    return {
        "ok": True,
        "latency_ms": _ms(started),
        "web_clock_offset_seconds": _round(database_clock.offset()),
    }


def check_broker() -> dict[str, Any]:
    started = time.monotonic()
    try:
        # One attempt with a short timeout: a health check must answer even when the broker
        # does not.
        broker_probe.probe(app, settings.HEALTH_BROKER_TIMEOUT)
    except Exception as error:
        _broker_unanswered(error)
        return {"ok": False, "error": _broker_problem(error)}
    return {"ok": True, "latency_ms": _ms(started)}


def check_beat() -> dict[str, Any]:
    """Is a beat leading, and when did a beat last look for due imports?

    A live beat renews its leader lease in Redis every few seconds and stamps every loop in
    Redis (project.beat); a loop older than a minute means no beat is dispatching imports.
    """
    from common.redis_client import LAST_TICK_KEY, LEADER_LEASE

    try:
        value, stamp = _ask_redis(
            settings.REDIS_URL, lambda redis: redis.mget(LEADER_LEASE, LAST_TICK_KEY)
        )
    except Exception as error:
        # Logged only: the broker check reports Redis itself.
        _say_redis_problem("beat's lease could not be read", error)
        return {
            "ok": False,
            "alive": False,
            "leader": None,
            "last_tick": None,
            "seconds_ago": None,
            "clock_offset_seconds": None,
        }
    leader = value.decode().rsplit(":", 1)[0] if value else None
    # A stamp of an older beat has no offset.
    at, _, offset = (stamp.decode() if stamp else "").partition(" ")
    last_tick = datetime.fromtimestamp(float(at), tz=UTC) if at else None
    age = (database_clock.now() - last_tick).total_seconds() if last_tick else None
    clock_offset = float(offset) if offset else None
    alive = leader is not None and age is not None and age < BEAT_STALE_SECONDS
    check = {
        "ok": alive,
        "alive": alive,
        "leader": leader,
        "last_tick": last_tick,
        "seconds_ago": _round(age),
        "clock_offset_seconds": _round(clock_offset),
    }
    off = database_clock.off_by(clock_offset or 0.0)
    if off:
        check["ok"] = False
        check["message"] = (
            f"beat's host clock is {off} the database's: imports fire on the database's "
            "time, but beat's log and its maintenance jobs keep the host's; set the host's "
            "time (NTP)"
        )
    return check


# This process's last answer of the workers (check_workers), with when it was asked.
WORKERS_KEY = "importbeat:health:workers"


def check_workers(max_age: float = 0) -> dict[str, Any]:
    """Workers that answer a ping, and whether each can reach the database: asked now, or up
    to `max_age` seconds ago by this process.

    A worker that answers pings but cannot reach its database would take messages it cannot
    work on: it is named under `broken` and makes the cluster degraded. Asking waits the whole
    ping timeout twice, however many workers answer: `/health` reuses a recent answer
    (HEALTH_WORKERS_MAX_AGE), so that load balancers probing every few seconds do not keep a
    web worker waiting a second at each probe.
    """
    known = cache.get(WORKERS_KEY)
    if known is not None and time.monotonic() - known[0] <= max_age:
        return known[1]
    timeout = settings.HEALTH_WORKER_PING_TIMEOUT
    try:
        # Each question on a connection of its own: asked on the pool's connection, the
        # workers' replies were lost one ask in two or more (kombu's Redis transport, vanilla
        # too), and health said "no worker answers", or missed a broken worker.
        with app.connection_for_write() as broker:
            replies = app.control.ping(timeout=timeout, connection=broker) or []
        with app.connection_for_write() as broker:
            answers = (
                app.control.broadcast(
                    "importbeat_database", reply=True, timeout=timeout, connection=broker
                )
                or []
            )
    except Exception as error:
        problem = _broker_problem(error)
        return {"ok": False, "count": 0, "workers": [], "broken": [], "error": problem}
    names = sorted(name for reply in replies for name in reply)
    database = {name: answer for reply in answers for name, answer in reply.items()}
    # A worker that did not answer the database question in time is not known to be broken.
    broken = sorted(
        name for name in names if name in database and not database[name].get("ok", False)
    )
    answer = {
        "ok": bool(names) and not broken,
        "count": len(names),
        "workers": names,
        "broken": [
            {
                "worker": name,
                "error": database[name].get("error", ""),
                # How old the worker's verdict is: its check runs on a thread of its own, and
                # one that waits on the database answers with the last (project/worker_checks).
                "checked_seconds_ago": database[name].get("checked_seconds_ago"),
            }
            for name in broken
        ],
    }
    clocks_off = {
        name: offset
        for name in names
        if (offset := database.get(name, {}).get("clock_offset_seconds")) is not None
        and database_clock.off_by(offset)
    }
    if clocks_off:
        answer["ok"] = False
        answer["clocks_off"] = [
            {"worker": name, "clock_offset_seconds": offset} for name, offset in clocks_off.items()
        ]
        answer["message"] = (
            "; ".join(
                f"{name}'s host clock is {database_clock.off_by(offset)} the database's"
                for name, offset in clocks_off.items()
            )
            + ": runs are timed by the database's clock, but a worker's log keeps its host's;"
            " set the host's time (NTP)"
        )
    cache.set(WORKERS_KEY, (time.monotonic(), answer), timeout=None)
    return answer


def workers_not_asked(broker: dict[str, Any]) -> dict[str, Any]:
    """The workers' check while the broker's fails (`broker`, check_broker's answer): a live
    worker cannot answer a ping through a broker that refuses writes (a full Redis: its reply is
    a write), nor one that is down. Not counted, and said why: health said "count": 0 with no
    word, which invites a restart of the workers, and a worker started on a full Redis exits
    (the one that would take the runs behind once Redis has room)."""
    return {
        "ok": False,
        "count": None,
        "workers": [],
        "broken": [],
        "message": "the workers cannot answer through the broker, so they are not counted: "
        + broker.get("error", "it does not answer"),
    }


def check_schedules() -> dict[str, Any]:
    """Late imports: a tick missed, or the next one overdue past the grace period."""
    from schedules.attention import late_imports_count

    try:
        late = late_imports_count()
    except Exception as error:
        return {"ok": False, "late_imports": None, "error": _database_problem(error)}
    return {"ok": late == 0, "late_imports": late}


def check_backlog() -> dict[str, Any]:
    """Ticks beat skipped because their import's earlier run still waited for a worker (within
    the last BACKLOG_SAID_SECONDS): the workers answer, or not, but do not keep up, and imports
    run less often than their schedules say. Nothing is down, so the cluster is degraded."""
    from common.redis_client import BACKLOG_KEY

    try:
        noted = _ask_redis(settings.REDIS_URL, lambda redis: redis.hgetall(BACKLOG_KEY))
        if not noted:
            return {"ok": True, "skipped_ticks": 0}
        at = {
            name: datetime.fromtimestamp(float(noted[name.encode()]), UTC)
            for name in ("since", "last", "waiting_since")
        }
        skipped = int(noted[b"skipped"])
    except Exception as error:
        # Logged only: the broker check reports Redis itself (beat's check does the same); a
        # key this release did not write is read as no answer, not as a 500.
        _say_redis_problem("the backlog's figures could not be read", error)
        return {"ok": False, "skipped_ticks": None}
    return {
        "ok": False,
        "skipped_ticks": skipped,
        "since": at["since"],
        "last": at["last"],
        "message": (
            f"{_count(skipped, 'scheduled tick')} skipped from {at['since']:%Y-%m-%d %H:%M} "
            f"to {at['last']:%H:%M} UTC: their imports' earlier runs still waited for a worker "
            f"(the oldest queued at {at['waiting_since']:%H:%M:%S} UTC); are the workers "
            "running, and enough of them?"
        ),
    }


def check_notifications() -> dict[str, Any]:
    """Notifications that have waited past the sweep's resend and the e-mail interval: a mail
    server or callbacks that take nothing. Nothing is down, but alerts reach no one, so the
    cluster is degraded; each import's delivery log says why. And e-mails that failed for good
    lately with none delivered (_emails_refused): a mail server that refuses everything."""
    from django.db.models import Count, Min

    from schedules.email_digest import WAITING
    from schedules.models import NotificationDelivery

    now = database_clock.now()
    patience = settings.STALE_QUEUED_SECONDS + settings.EMAIL_DIGEST_SECONDS
    stuck = NotificationDelivery.objects.filter(
        status__in=WAITING, created_at__lt=now - timedelta(seconds=patience)
    ).aggregate(count=Count("id"), since=Min("created_at"))
    check: dict[str, Any] = {"ok": not stuck["count"], "stuck": stuck["count"]}
    if stuck["count"]:
        check["oldest_since"] = stuck["since"]
        check["message"] = (
            f"{_count(stuck['count'], 'notification')} waited over {patience // 60} minutes "
            f"without being delivered, the oldest since {stuck['since']:%Y-%m-%d %H:%M} UTC: the "
            f"mail server (EMAIL_URL) or the callbacks do not take them (each import's delivery "
            f"log says why)"
        )
        check.update(_waiting_their_turn(check["message"]))
    if refused := _emails_refused(now):
        message = refused.pop("message")
        check.update(refused, ok=False)
        check["message"] = f"{check['message']}; and {message}" if "message" in check else message
    return check


def _emails_refused(now: datetime) -> dict[str, Any]:
    """E-mails that failed for good in the last STALE_QUEUED_SECONDS while none was delivered:
    the mail server refuses everything (a login expired, the sender no longer allowed, the
    account suspended), every owner's alerts included. It is no wait: each fails at once, so
    the notifications stuck never counted them and health said `ok` (notifications hunt)."""
    from schedules.notifications import SERVER_REFUSALS, recent_outcomes
    from schedules.text import quoted

    window = settings.STALE_QUEUED_SECONDS
    outcomes = recent_outcomes(now - timedelta(seconds=window))
    failed = outcomes.failed["email"]
    if not failed or outcomes.delivered["email"]:
        return {}
    if failed == 1 and not outcomes.email_failed_words.startswith(SERVER_REFUSALS):
        # One e-mail refused for itself (its content taken for spam) on a quiet installation
        # made the cluster degraded for the whole window (review); a refused login or sender
        # is the server refusing everything, said at once.
        return {}
    return {
        "emails_failed": failed,
        "message": (
            f"{_count(failed, 'e-mail')} failed for good in the last {_minutes(window)} and none "
            f"was delivered: the mail server (EMAIL_URL) refuses them; the last one said: "
            f"{quoted(outcomes.email_failed_words, 500)}"
        ),
    }


def _minutes(seconds: int) -> str:
    return _count(seconds // 60, "minute") if seconds >= 120 else _count(seconds, "second")


def _waiting_their_turn(message: str) -> dict[str, Any]:
    """`parked` (tasks.turns), and the message saying so when some notifications wait their
    turn: then they are taken, but slower than they come (a long line is not a dead receiver,
    and raising EMAIL_CONCURRENCY is what shortens the mail relay's)."""
    from common.redis_client import parked_by_turn

    try:
        _ask_redis(settings.REDIS_URL, lambda redis: None)  # not asked when it did not answer
        parked = parked_by_turn()
    except Exception as error:
        _say_redis_problem("the notifications' lines could not be read", error)
        return {}
    if not any(parked.values()):
        return {"parked": parked}
    lines = []
    if parked["mail"]:
        lines.append(
            f"{parked['mail']} behind the mail relay, which takes EMAIL_CONCURRENCY "
            f"({settings.EMAIL_CONCURRENCY}) at a time: raise it if the relay can take more"
        )
    if parked["owner"]:
        lines.append(f"{parked['owner']} behind an earlier webhook of their owner")
    words = "; ".join(lines)
    return {"parked": parked, "message": f"{message}. Waiting their turn now: {words}"}


# The settings that may name a Redis, each with what an eviction there loses, in the order the
# words say them.
REDIS_USES = (
    ("CELERY_BROKER_URL", "queued runs"),
    ("REDIS_URL", "run locks"),
    ("CELERY_RESULT_BACKEND", "task results"),
)


def redis_servers() -> list[tuple[str, list[str]]]:
    """The Redis servers importbeat uses, each once (a URL, the settings that name it): the
    broker, the results and REDIS_URL share one by default, and an operator may give each its
    own. A server is its host and port (or socket), whatever the database number."""
    from redis.connection import parse_url

    servers: dict[tuple[Any, ...], tuple[str, list[str]]] = {}
    for name, _ in REDIS_USES:
        url = getattr(settings, name, "") or ""
        if not url.startswith(("redis://", "rediss://", "unix://")):
            continue  # another broker (RabbitMQ) or results kept elsewhere
        try:
            parts = parse_url(url)
        except ValueError:
            continue  # kombu and Celery say it, at their start
        where = (parts.get("host"), parts.get("port") or 6379, parts.get("path"))
        servers.setdefault(where, (url, []))[1].append(name)
    return list(servers.values())


def check_redis() -> dict[str, Any]:
    """Does each Redis importbeat uses keep what importbeat puts in it? One with a memory cap
    that evicts keys when it is full (any `maxmemory-policy` but `noeviction`) drops run leases
    (two runs of one import at once) and queued messages without a word; keys it evicted already
    say it happened. Nothing is down, so the cluster is degraded, and the message says what to
    set. The broker's Redis counts most, and it may not be REDIS_URL's: each is read."""
    servers = redis_servers()
    several = len(servers) > 1
    checked = [_check_redis_server(url, names, several) for url, names in servers]
    told = [server for server in checked if server["policy"] is not None]
    evicting = [server for server in told if server["may_evict"]]
    check: dict[str, Any] = {
        "ok": all(server["ok"] for server in checked),
        "policy": (evicting or told or [{"policy": None}])[0]["policy"],
        "may_evict": any(server["may_evict"] for server in told) if told else None,
        "evicted_keys": sum(server["evicted_keys"] for server in told) if told else None,
        "servers": checked,
    }
    if said := [server["message"] for server in checked if "message" in server]:
        check["message"] = "; ".join(said)
        if evicting or any(server["evicted_keys"] for server in told):
            check["message"] += "; set maxmemory-policy noeviction"
    return check


def _check_redis_server(url: str, names: list[str], several: bool) -> dict[str, Any]:
    address = server_address(url)
    where = f"Redis at {address}" if address else "Redis"
    if several:
        where += f" ({', '.join(names)})"
    check: dict[str, Any] = {"at": address, "for": names}
    try:
        # One round trip: Redis 6.2 answers INFO one section at a time.
        memory, stats = _ask_redis(
            url,
            lambda redis: redis.pipeline(transaction=False).info("memory").info("stats").execute(),
        )
    except Exception as error:
        check.update(ok=False, policy=None, may_evict=None, evicted_keys=None)
        if several:
            # The broker's and beat's checks say when the broker's or REDIS_URL's Redis is
            # down; one only the results use is said here.
            check["message"] = login_refusal(where, error) or (
                f"cannot reach {where}: {reason(error)}"
            )
            # (the message holds its reason: said again after it before, ": <why>: <why>")
            if not _said_by_the_broker(error):
                _said(check["message"], error, "")
        else:
            _say_redis_problem("Redis's memory policy could not be read", error)
        return check
    policy = memory.get("maxmemory_policy")
    evicts = bool(memory.get("maxmemory")) and policy not in (None, "noeviction")
    evicted = int(stats.get("evicted_keys") or 0)
    check.update(ok=not (evicts or evicted), policy=policy, may_evict=evicts, evicted_keys=evicted)
    if not check["ok"]:
        check["message"] = _redis_problem(where, names, policy if evicts else None, evicted)
    return check


def _redis_problem(where: str, names: list[str], evicting_policy: str | None, evicted: int) -> str:
    held = [lost for name, lost in REDIS_USES if name in names]
    lost = held[0] if len(held) == 1 else f"{', '.join(held[:-1])} and {held[-1]}"
    said = []
    if evicting_policy:
        said.append(
            f"{where} may evict keys when it is full (maxmemory-policy {evicting_policy}): "
            f"{lost} would be lost without a word"
        )
    if evicted:
        said.append(
            f"{where} evicted {_count(evicted, 'key')} since it started: {lost} may have been lost"
        )
    return "; ".join(said)


def processed_retention_figures() -> dict[str, Any] | None:
    """The last retention job's figures of drop folders' processed files, as the worker that ran
    it kept them in Redis (tasks.processed_retention): the web process may not see the folders.
    None before the first job; RedisError while Redis does not answer."""
    from common.redis_client import PROCESSED_RETENTION_KEY

    kept = _ask_redis(settings.REDIS_URL, lambda redis: redis.get(PROCESSED_RETENTION_KEY))
    return json.loads(kept) if kept else None


def check_processed_files() -> dict[str, Any]:
    """Old processed files the last retention job could not delete, and `processed` entries it
    left alone: nothing is down, but a drop folder fills until someone acts, so the cluster is
    degraded and the message says how many and what to do (the worker's log names them)."""
    try:
        figures = processed_retention_figures() or {}
    except Exception as error:
        # Logged only: the broker check reports Redis itself (beat's check does the same).
        _say_redis_problem("the retention's figures could not be read", error)
        return {"ok": False, "not_deleted": None, "folders_left_alone": None}
    not_deleted = figures.get("processed_files_not_deleted", 0)
    left_alone = figures.get("processed_folders_skipped", 0)
    check: dict[str, Any] = {
        "ok": not (not_deleted or left_alone),
        "not_deleted": not_deleted,
        "folders_left_alone": left_alone,
    }
    if not check["ok"]:
        check["message"] = _processed_files_problem(not_deleted, left_alone)
    return check


def _processed_files_problem(not_deleted: int, left_alone: int) -> str:
    said = []
    if not_deleted:
        said.append(
            f"{_count(not_deleted, 'old processed file')} in drop folders could not be deleted "
            "by the last retention job: give the workers write access to their processed/ "
            "folders (the workers' log names each file and why)"
        )
    if left_alone:
        said.append(
            f"{_count(left_alone, 'processed/ folder')} left alone by the last retention job, "
            "a link or a file where a folder should be: replace it with a folder (the "
            "workers' log names each one)"
        )
    return "; ".join(said)


def _count(number: int, thing: str) -> str:
    return f"{number} {thing}" if number == 1 else f"{number} {thing}s"


def report() -> tuple[dict[str, Any], bool]:
    """All checks, and whether the required ones (database, broker) passed: within a few
    seconds whatever the dependencies do (DATABASE_WAIT_SECONDS)."""
    asked = _unanswered.set({})
    # This request's verdict for its caller's token (bounded_token_lookup), which is looked up
    # after the report.
    _database_silent.set(False)
    _token_unchecked.set(False)
    try:
        with _database_bounded() as database_cut:
            checks: dict[str, Any] = {"database": check_database()}
            if database_cut():
                _database_silent.set(True)
                checks["database"] = {"ok": False, "error": _database_unanswered()}
            database_ok = checks["database"]["ok"]
            checks["schedules"] = (
                check_schedules() if database_ok else {"ok": False, "late_imports": None}
            )
            checks["notifications"] = (
                _or_unanswered(check_notifications, {"ok": False, "stuck": None})
                if database_ok
                else {"ok": False, "stuck": None}
            )
        if database_cut() and database_ok:
            # A late answer of the late imports' or notifications' counts: degraded, said so.
            words = _database_unanswered()
            for name in ("schedules", "notifications"):
                if not checks[name]["ok"]:
                    checks[name]["error"] = words
            database_ok = False  # beat's check reads the database's clock
        checks["broker"] = check_broker()
        checks["beat"] = check_beat() if database_ok else {"ok": False, "last_tick": None}
        checks["workers"] = (
            check_workers(settings.HEALTH_WORKERS_MAX_AGE)
            if checks["broker"]["ok"]
            else workers_not_asked(checks["broker"])
        )
        checks["backlog"] = check_backlog()
        checks["redis"] = check_redis()
        checks["processed_files"] = check_processed_files()
    finally:
        _unanswered.reset(asked)
    order = (
        "database", "broker", "beat", "workers", "schedules", "backlog", "redis",
        "processed_files", "notifications",
    )  # fmt: skip
    checks = {name: checks[name] for name in order}
    healthy = checks["database"]["ok"] and checks["broker"]["ok"]
    degraded = not all(
        checks[name]["ok"]
        for name in (
            "beat",
            "workers",
            "schedules",
            "backlog",
            "redis",
            "processed_files",
            "notifications",
        )
    )
    status = "down" if not healthy else ("degraded" if degraded else "ok")
    return {"status": status, "time": timezone.now(), "checks": checks}, healthy


def for_caller(body: dict[str, Any], staff: bool) -> dict[str, Any]:
    """What a caller may see of a finished report: everything for staff, statuses for others.

    The endpoint is public (load balancers call it without a token), and the names in the
    details (beat's host and pid, the workers' host names) map the cluster for an attacker.
    """
    if staff:
        return body
    checks = {name: {"ok": bool(check.get("ok"))} for name, check in body["checks"].items()}
    public = {"status": body["status"], "time": body["time"], "checks": checks}
    if _token_unchecked.get():
        # Names nothing the statuses do not say (the database is down), and tells a monitor
        # holding a staff token why it reads statuses only.
        public["message"] = (
            "the token could not be checked: the database does not answer; statuses only"
        )
    return public


def bounded_token_lookup(look_up: Callable[[], T]) -> T:
    """`look_up()`, the token of a `/health` caller read from the database, within health's
    bound: not asked when this request's report found the database silent, and cut after
    DATABASE_WAIT_SECONDS otherwise. Raises DatabaseError then: the caller is anonymous.

    The view looks the token up after the report, to show a staff caller the details: on a
    database that accepts connections and never answers, that lookup waited out the settings'
    connect_timeout (10 s) after the report's bounded checks, and a monitor holding a staff
    token took 12 to 14 s where an anonymous one took 2 to 4 s (health3 hunt).
    """
    from django.db import DatabaseError, OperationalError

    if _database_silent.get():
        _token_unchecked.set(True)
        raise OperationalError("the database did not answer this request's health check")
    with _database_bounded() as cut:
        try:
            found = look_up()
        except DatabaseError:
            _token_unchecked.set(True)
            raise
    if cut():
        _token_unchecked.set(True)
        raise OperationalError("the token's lookup was cut")
    return found


def _ms(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 1)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


# What a failed check says, for staff only (`for_caller`: the endpoint is public and these
# name hosts and ports): what could not be reached and why; the error itself is logged.


def _database_problem(error: Exception) -> str:
    cut = _database_cut.get()
    if cut is not None and cut.is_set():
        return _database_unanswered()  # what failed is the cut's, said in its words
    return _said(f"cannot reach {database_place(connection.settings_dict)}", error)


def _broker_problem(error: Exception) -> str:
    place = broker_place(app.conf.broker_write_url)
    if words := login_refusal(place, error):
        return _said(words, error, "")
    refused = refusal(error)
    if refused is not None:
        return _said(f"{place} refuses new messages", error, refused)
    return _said(f"cannot reach {place}", error)


def _said(what: str, error: BaseException, why: str | None = None) -> str:
    """`<what>: <why>` in words (error_words.reason; `what` alone when `why` is ""), logged as
    _say_once does; the error's own class and text only at DEBUG."""
    words = what if why == "" else f"{what}: {reason(error) if why is None else why}"
    _say_once(words)
    logger.debug("%s (%s: %s)", words, type(error).__name__, log_text(error))
    return words


def _say_redis_problem(what: str, error: BaseException) -> None:
    """`<what>: <why>` in the log; a login REDIS_URL's Redis refused said as such, once in a
    request: not again after the broker's check said it of the same server (it was said five
    times, one per check, as "… could not be read: authentication failed")."""
    if login_refusal("", error) is None:
        _said(what, error)
        return
    if _said_by_the_broker(error):
        return
    _said(login_refusal(broker_place(settings.REDIS_URL, "Redis"), error) or what, error, "")


# A line `/health` logs for a dependency it cannot use is said again, with how often it was met,
# at most this often: it logged redis-py's own text ("Timeout reading from socket", "Error 111
# connecting to …") and a class name at every request, every few seconds per load balancer.
_folded = SaidOnce()


def _say_once(words: str) -> None:
    if (more := _folded.again(words)) is not None:
        logger.warning("%s%s", words, more)


# --- bounds -------------------------------------------------------------------------------------

# Whether this request's report found the database silent (it raised, or was cut), and whether
# the caller's token could not be checked for it (bounded_token_lookup); set by each report.
_database_silent: ContextVar[bool] = ContextVar("health_database_silent", default=False)
_token_unchecked: ContextVar[bool] = ContextVar("health_token_unchecked", default=False)

# Set while the database's checks run (_database_bounded): once the connection was cut.
_database_cut: ContextVar[threading.Event | None] = ContextVar("health_database_cut", default=None)

# The Redis servers that did not answer in this request (report), by server: not asked again;
# under _BROKER, the broker's error when its server is REDIS_URL's (said once, by its check).
_BROKER = ("broker",)
_unanswered: ContextVar[dict[tuple[Any, ...], BaseException] | None] = ContextVar(
    "health_unanswered", default=None
)


def _server(url: str) -> tuple[Any, ...] | None:
    """A Redis URL's server and the user it connects as (not the database number)."""
    from redis.connection import parse_url

    try:
        parts = parse_url(url)
    except ValueError:
        return None
    return (
        parts.get("host"), parts.get("port") or 6379, parts.get("path"), parts.get("username"),
        parts.get("password"), url.split(":", 1)[0],
    )  # fmt: skip


@functools.cache
def _health_client(url: str) -> Any:
    """A client of `url` for `/health`: short waits and no retry (redis-py retries three times
    by default, each waiting out its socket timeout)."""
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    from common.redis_client import from_url

    return from_url(
        url,
        socket_connect_timeout=REDIS_WAIT_SECONDS,
        socket_timeout=REDIS_WAIT_SECONDS,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=10,
    )


def _ask_redis(url: str, ask: Callable[[Any], Any]) -> Any:
    """`ask(client)` of the Redis at `url`, unless it did not answer earlier in this request:
    then what it raised then is raised again, without waiting."""
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    unanswered = _unanswered.get()
    server = _server(url)
    if unanswered is not None and server in unanswered:
        raise unanswered[server]
    try:
        return ask(_health_client(url))
    except (RedisConnectionError, RedisTimeoutError, OSError) as error:
        if unanswered is not None and server is not None:
            unanswered[server] = error
        raise


def _said_by_the_broker(error: BaseException) -> bool:
    """Whether `error` is the one the broker's check met and said in this request, on the
    server of REDIS_URL (_broker_unanswered): each Redis check raises it again."""
    unanswered = _unanswered.get()
    return unanswered is not None and unanswered.get(_BROKER) is error


def _broker_unanswered(error: BaseException | None) -> None:
    """The broker did not answer: when it is REDIS_URL's server (the default), that Redis is
    not asked again in this request, each read would wait as long for nothing."""
    unanswered = _unanswered.get()
    url = app.conf.broker_write_url or ""
    if error is None or unanswered is None:
        return
    if refusal(error) is not None and login_refusal("", error) is None:
        return  # a full Redis still answers reads
    if not url.startswith(("redis://", "rediss://", "unix://")):
        return
    server = _server(url)
    if server is not None and server == _server(settings.REDIS_URL):
        unanswered[server] = unanswered[_BROKER] = error


def _or_unanswered(check: Callable[[], dict[str, Any]], instead: dict[str, Any]) -> dict[str, Any]:
    """`check()`, or `instead` when the database stopped answering in it (_database_bounded)."""
    from django.db import DatabaseError

    try:
        return check()
    except DatabaseError as error:
        return {**instead, "ok": False, "error": _database_problem(error)}


def _database_unanswered() -> str:
    words = (
        f"{database_place(connection.settings_dict)} did not answer within "
        f"{DATABASE_WAIT_SECONDS} s"
    )
    _say_once(words)
    return words


@contextmanager
def _database_bounded() -> Iterator[Callable[[], bool]]:
    """The database's checks, given DATABASE_WAIT_SECONDS in all: a connection is made with
    that connect_timeout, and one that has not answered by then is cut (its socket shut down,
    from a watch thread: psycopg waits on it without a timeout of its own, and a server that
    accepts and never answers, or a query that waits on a lock, held the request for good).
    Yields whether it was cut; a cut connection is closed, and made again at the next use."""
    from django.db import DEFAULT_DB_ALIAS, connections

    wrapper = connections[DEFAULT_DB_ALIAS]  # this thread's: the watch thread has its own
    saved = wrapper.settings_dict
    options = dict(saved.get("OPTIONS") or {})
    given = int(options.get("connect_timeout") or 0)
    options["connect_timeout"] = (
        min(given, DATABASE_WAIT_SECONDS) if given > 0 else (DATABASE_WAIT_SECONDS)
    )
    wrapper.settings_dict = {**saved, "OPTIONS": options}
    done, cut = threading.Event(), threading.Event()
    lock = threading.Lock()

    def watch() -> None:
        if done.wait(DATABASE_WAIT_SECONDS):
            return
        # Still connecting (libpq's connect_timeout ends that) or waiting for an answer.
        while not done.wait(0.1):
            with lock:
                if done.is_set():
                    return
                if _shut_down(wrapper, cut):
                    return

    watcher = threading.Thread(target=watch, name="health-database-watch", daemon=True)
    watcher.start()
    watched = _database_cut.set(cut)
    try:
        yield cut.is_set
    finally:
        _database_cut.reset(watched)
        with lock:
            done.set()
        wrapper.settings_dict = saved
        if cut.is_set():
            with suppress(Exception):
                wrapper.close()
            wrapper.cut_by_health = False


def _shut_down(wrapper: Any, cut: threading.Event) -> bool:
    """Shut down the socket of Django's connection `wrapper` (of another thread), `cut` set
    first; False when it has none yet. Set after, the request's thread could meet the closed
    socket first and say "cannot reach the database: the server closed the connection"."""
    raw = wrapper.connection
    if raw is None:
        return False
    try:
        fd = raw.pgconn.socket
    except Exception:
        return False
    # The backend's check that meets it says it was cut here (common.database_backend).
    wrapper.cut_by_health = True
    cut.set()
    with suppress(OSError):
        duplicate = socket.socket(fileno=os.dup(fd))
        try:
            duplicate.shutdown(socket.SHUT_RDWR)
        finally:
            duplicate.close()
    return True
