"""Workers watch beat: when no beat has ticked for a while, owners of overdue imports hear it.

Beat dispatches the runs and schedules the maintenance that finds what was lost, so a beat that
died took both with it: imports went unrun, `/api/v1/health` said so to whoever looked, and no
owner heard of it until beat was back. Each worker's main process now looks at beat's last tick
(the stamp every beat loop writes in Redis, project.beat) every MAINTENANCE_INTERVAL_SECONDS.
Once it is older than ABSENT_SECONDS, one worker of the cluster (a Redis key taken for the
interval) logs it as an error and sends `importbeat.start_overdue_late_streaks`: every import
overdue by more than the grace period turns late, and its owner is told once
(schedules.overdue). A cluster whose beat never ran (no stamp) is left alone: it never
dispatched, so nothing it promised is overdue. A stamp gone with a Redis restarted empty is
put back as the worker saw it last.

A thread of its own, not the worker's event loop: Redis may be slow to answer, and the loop
carries every running task's result.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from celery import current_app
from celery.signals import worker_ready, worker_shutdown
from django.conf import settings
from kombu.exceptions import KombuError
from redis.exceptions import RedisError

from common import database_clock, error_words
from common.redis_client import LAST_TICK_KEY, client

logger = logging.getLogger("importbeat.reconcile")

OVERDUE_TASK = "importbeat.start_overdue_late_streaks"
# The key one worker takes to act for the cluster, for one interval.
WATCHING_KEY = "importbeat:beat:watched"
_stopped = threading.Event()
# The last stamp of beat's this worker saw.
_seen: bytes | None = None


def absent_seconds() -> float:
    """How long beat's last tick is ago, past which no beat is taken to run: health's, or
    twice the grace period when that is longer (a tick may be dispatched that late)."""
    # (imported here: the app loads this module before Django's models are ready)
    from schedules.api.health import BEAT_STALE_SECONDS

    return max(float(BEAT_STALE_SECONDS), 2.0 * settings.MISSED_TICK_GRACE_SECONDS)


def look(hostname: str = "") -> float | None:
    """Act for the cluster if no beat has ticked for absent_seconds() and no other worker
    acted this interval; how long ago beat last ticked, when acted."""
    global _seen
    redis = client()
    stamp = redis.get(LAST_TICK_KEY)
    if stamp:
        _seen = stamp
    elif _seen is not None:
        # Redis restarted empty with beat away: the stamp this worker saw last is put back (a
        # beat ticking overwrites it). Read as "beat never ran", no worker said anything
        # however long beat stayed away, while health called beat down (restart hunt).
        redis.set(LAST_TICK_KEY, _seen, nx=True)
        stamp = redis.get(LAST_TICK_KEY)
    if not stamp:
        return None
    # The stamp is in the database's time: this host's, with its offset from the database's
    # (measured at the worker's start, project.worker_checks). A worker whose clock ran three
    # minutes fast said at every look that no beat had ticked for three minutes.
    now = time.time() + (database_clock.known_offset() or 0.0)
    ago = now - float(stamp.decode().partition(" ")[0])
    if ago < absent_seconds():
        return None
    interval = max(1, int(settings.MAINTENANCE_INTERVAL_SECONDS))
    if not redis.set(WATCHING_KEY, hostname or "worker", nx=True, ex=interval):
        return None
    logger.error(
        "no beat has ticked for %.0fs: no import is dispatched, nor any maintenance run; "
        "the owners of imports overdue meanwhile are told they are late (start beat)",
        ago,
    )
    current_app.send_task(OVERDUE_TASK, ignore_result=True)
    return ago


def _watch(hostname: str) -> None:
    while not _stopped.wait(settings.MAINTENANCE_INTERVAL_SECONDS):
        look_or_say_why(hostname)


def look_or_say_why(hostname: str = "") -> None:
    """look(), or a line saying in words why beat's last tick could not be looked at.

    It logged the library's text: "beat's last tick not looked at: invalid username-password
    pair or user is disabled." for a Redis refusing the login, "Error 111 connecting to …" for
    one away (words4 hunt)."""
    try:
        look(hostname)
    except RedisError as error:
        logger.warning("beat's last tick not looked at: %s", error_words.redis_for_the_log(error))
    except (KombuError, OSError) as error:
        # The overdue task's message did not go: the broker refused it, or is away.
        said = error_words.redis_for_the_log(error, settings.CELERY_BROKER_URL, "the broker")
        logger.warning(
            "the owners of overdue imports are not told at this look (the next tries again): %s",
            said,
        )
    except ValueError:
        logger.warning("beat's last tick not looked at: %s in Redis is not a time", LAST_TICK_KEY)


@worker_ready.connect(weak=False, dispatch_uid="importbeat.beat_watch")
def _start(sender: Any = None, **_kwargs: Any) -> None:
    _stopped.clear()
    hostname = getattr(sender, "hostname", "") or ""
    threading.Thread(target=_watch, args=(hostname,), name="beat-watch", daemon=True).start()


@worker_shutdown.connect(weak=False, dispatch_uid="importbeat.beat_watch.stop")
def _stop(**_kwargs: Any) -> None:
    _stopped.set()
