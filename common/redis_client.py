"""The Redis of short-lived shared state: leases (common.leases), beat's stamps (project.beat),
the fields of unsaved checks (schedules.unsaved_checks), read back by the health check.

In `common` so that beat, `schedules` and `tasks` share it without importing one another
(STYLE rule 15); the key names two processes share live here for the same reason: beat writes
them, the web process's health check reads them.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import redis
from django.conf import settings

from common import redis_tls

# The beat holding this lease runs the maintenance entries (project.beat).
LEADER_LEASE = "importbeat:beat:leader"
# The last loop of any beat that dispatched imports (health, metrics): its Unix time in the
# database's clock, then that beat's host's offset from the database's clock, in seconds.
LAST_TICK_KEY = "importbeat:beat:last_tick"
# Ticks beat skipped because their import's earlier run still waited for a worker: a hash of
# the count, when the streak began and ended, and when the waiting run was queued
# (schedules.dispatch writes it, /health and /metrics read it); it lives BACKLOG_SAID_SECONDS
# past the last such tick.
BACKLOG_KEY = "importbeat:beat:backlog"
BACKLOG_SAID_SECONDS = 600
# The last retention job's figures of drop folders' processed files (tasks.processed_retention
# writes them on a worker, /metrics and /health read them on the web process).
PROCESSED_RETENTION_KEY = "importbeat:retention:processed_files"
# The lines of notifications waiting their turn (tasks.turns writes them on a worker, /metrics
# and /health count them, parked_by_turn): a hash of each line's key ("mail", "owner:<id>")
# and its number of turns, and a list per key of the parked notifications.
TURN_LINES_KEY = "importbeat:turns:lines"


def turn_line_key(key: str) -> str:
    """The Redis list of the notifications parked behind `key`'s turns."""
    return f"importbeat:turns:{key}:line"


def parked_by_turn() -> dict[str, int]:
    """The notifications parked now: behind the mail relay's turns (`mail`) and behind another
    webhook of their owner (`owner`). One round trip for the lines' lengths; raises RedisError."""
    keys = [key.decode() for key in client().hkeys(TURN_LINES_KEY)]
    pipe = client().pipeline(transaction=False)
    for key in keys:
        pipe.llen(turn_line_key(key))
    by_turn = {"mail": 0, "owner": 0}
    for key, length in zip(keys, pipe.execute(), strict=True):
        by_turn["mail" if key == "mail" else "owner"] += length
    return by_turn


@cache
def client() -> redis.Redis:
    """One client per process (redis-py's pool notices a fork and reconnects in the child)."""
    return client_at(settings.REDIS_URL)


@cache
def client_at(url: str) -> redis.Redis:
    """One client per process of the Redis at `url`: REDIS_URL's, or the broker's or the
    results' where an operator put them on servers of their own (the health check reads their
    memory policy)."""
    return from_url(url, socket_connect_timeout=2, socket_timeout=5, health_check_interval=10)


def from_url(url: str, **kwargs: Any) -> redis.Redis:
    """A redis-py client of `url`, its TLS options read as every Redis client of importbeat
    reads them (common.redis_tls: a rediss:// URL checks the server's certificate unless it
    says ssl_cert_reqs=none). Raises redis_tls.TlsOptionError for an option it cannot honour."""
    return redis.Redis.from_url(redis_tls.canonical(url), **kwargs)
