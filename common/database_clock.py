"""PostgreSQL's clock: the one time that what one process writes and another compares is read by.

Beat, the workers and the web may run on different hosts, each with its own clock. Beat decides
that an import's tick is due, a worker writes a run's heartbeat that another worker's sweep
judges, reconciliation looks for ticks without runs, health ages beat's last loop. With a host
whose clock was off (no NTP, a VM resumed from a snapshot), a beat two minutes fast fired every
import two minutes early, silently; a beat two minutes slow fired them late, and health called
it down. Each process now reads the database's time as its own clock plus the offset it
measured (one query, at most every CHECK_EVERY_SECONDS), and says so in its log when its clock
is off by more than TOLERANCE_SECONDS.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta
from typing import Any

import psycopg
from django.db import DatabaseError, connection
from django.utils import timezone

logger = logging.getLogger("importbeat.clock")

# How often a process measures its offset again: a clock stepped (a VM resumed) is followed
# within this, at a query a half-minute per process.
CHECK_EVERY_SECONDS = 30.0
# Further off than this, the process says so (log, health). NTP keeps hosts within milliseconds.
TOLERANCE_SECONDS = 5.0

# (time.monotonic() of the measure, the offset in seconds), or None before the first one.
_measured: tuple[float, float] | None = None
# The offset last said in the log, so a lasting one is said once, not every half-minute.
_said: float = 0.0


def now() -> datetime:
    """The database's time now, as this process best knows it."""
    return timezone.now() + timedelta(seconds=offset())


def timestamp() -> float:
    """The database's time now, in seconds since the epoch: for times kept in Redis that other
    processes compare (fairness's admissions, notifications' turns, a receiver's wait)."""
    return time.time() + offset()


def offset(strict: bool = False) -> float:
    """The database's clock minus this host's, in seconds (positive: this host is behind).
    `strict`: a database that does not answer raises, instead of giving the last offset known."""
    measured = _measured
    if measured is None or time.monotonic() - measured[0] >= CHECK_EVERY_SECONDS:
        return measure(strict=strict)
    return measured[1]


def known_offset() -> float | None:
    """The offset measured last, without a query; None before the first measure."""
    measured = _measured
    return measured[1] if measured is not None else None


def measure(cursor: Any = None, strict: bool = False) -> float:
    """Measure the offset now (one query, on `cursor` if given, else on Django's connection);
    the last one known if the database does not answer, unless `strict`."""
    global _measured
    try:
        before = time.time()
        if cursor is None:
            with connection.cursor() as django_cursor:
                database = _read(django_cursor)
        else:
            database = _read(cursor)
        after = time.time()
    except (DatabaseError, psycopg.Error) as error:
        if strict:
            raise
        logger.debug("the database's clock was not read: %s", error)
        return _measured[1] if _measured is not None else 0.0
    # Read half-way through the round trip.
    found = database - (before + after) / 2
    # One assignment of a tuple: threads (a run's lease renewer) read it whole.
    _measured = (time.monotonic(), found)
    _say(found)
    return found


def _read(cursor: Any) -> float:
    cursor.execute("SELECT extract(epoch FROM clock_timestamp())")
    return float(cursor.fetchone()[0])


def off_by(seconds: float) -> str:
    """Words for an offset beyond the tolerance ("90 s ahead of"), "" within it."""
    if abs(seconds) <= TOLERANCE_SECONDS:
        return ""
    return f"{abs(seconds):.0f} s {'behind' if seconds > 0 else 'ahead of'}"


def _say(found: float) -> None:
    global _said
    if abs(found - _said) <= TOLERANCE_SECONDS:
        return
    _said = found
    words = off_by(found)
    if words:
        logger.warning(
            "this host's clock is %s the database's: importbeat times ticks, heartbeats and "
            "beat's loop by the database's, but this process's log and the times it shows "
            "are off; set the host's time (NTP)",
            words,
        )
    else:
        logger.info("this host's clock agrees with the database's again")
