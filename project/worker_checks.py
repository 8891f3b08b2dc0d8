"""A worker that cannot do the work does not take it.

- At start (`worker_init`, before the worker consumes anything) the worker checks that it can
  reach the database (and that it takes writes), the broker and the Redis of REDIS_URL, and
  exits non-zero with a clear message if it cannot: a worker without its database would
  otherwise take messages and fail every one of them, and one without its run locks hand each
  back to the queue.
- While it runs, it answers the `importbeat_database` control command with whether it can reach
  its database and REDIS_URL's Redis now, so that `/api/v1/health` can name a worker that
  answers pings but cannot work (schedules.api.health).
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from celery.signals import worker_init
from celery.worker.control import inspect_command

from common import broker_probe, database_clock, read_only_database
from common.error_words import (
    broker_place,
    database_place,
    refused_or_unreachable,
    unreachable,
)

logger = logging.getLogger("importbeat.worker")

CONNECT_TIMEOUT_SECONDS = 3


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
    except psycopg.Error as error:
        return unreachable(place, error, logger)
    # A standby, or read-only transactions: each run it took would fail before it started.
    return f"{place} takes no writes: {refusal}" if refusal else None


def broker_problem(app: Any) -> str | None:
    """None if the broker answers, else what is wrong, in words (its password never)."""
    try:
        broker_probe.probe(app, CONNECT_TIMEOUT_SECONDS, retries=2)
    except Exception as error:
        return refused_or_unreachable(broker_place(app.conf.broker_write_url), error, logger)
    return None


def redis_problem() -> str | None:
    """None if the Redis of REDIS_URL answers, else what could not be reached and why, in
    words. It holds the run locks: a worker without it hands every run back to the queue. The
    broker's check covers it when they are one server; an operator may give each its own."""
    from django.conf import settings
    from redis import RedisError

    from common.redis_client import client

    try:
        client().ping()
    except RedisError as error:
        return unreachable(broker_place(settings.REDIS_URL, "Redis"), error, logger)
    return None


@worker_init.connect
def refuse_to_start_without_dependencies(sender: Any = None, **_kwargs: Any) -> None:
    app = sender.app if sender is not None else None
    problems = [
        database_problem(),
        broker_problem(app) if app is not None else None,
        redis_problem(),
    ]
    problems = [problem for problem in problems if problem]
    if not problems:
        return
    for problem in problems:
        logger.critical("worker not started: %s", problem)
        print(f"importbeat worker not started: {problem}", file=sys.stderr, flush=True)
    # Celery catches exceptions here; leave at once, before any message is consumed.
    sys.stderr.flush()
    import os

    os._exit(1)


@inspect_command()
def importbeat_database(state: Any) -> dict[str, Any]:
    """Can this worker do a run now: its database, and the Redis of its run locks."""
    problem = database_problem() or redis_problem()
    answer: dict[str, Any] = {"ok": problem is None, **({"error": problem} if problem else {})}
    # Measured by database_problem on its own connection: health says a worker's clock is off.
    offset = database_clock.known_offset()
    if offset is not None:
        answer["clock_offset_seconds"] = round(offset, 1)
    return answer
