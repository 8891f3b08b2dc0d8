"""The beat scheduler: django-celery-beat's database scheduler, made safe to run twice.

- Every import dispatch is stamped with the tick it stands for, so a tick sent twice (two beats,
  a redelivery) is refused by the run's unique (import, tick).
- Only the holder of a leader lease in Redis dispatches; any number of standbys wait, and one
  takes over within BEAT_LEADER_LEASE_SECONDS when the leader dies (at once after a clean stop).
- On becoming leader (a start or a take-over) it catches up: `coalesce` imports get one run
  (trigger `catchup`) for the latest tick missed while no beat led; `skip` imports, like every
  other import, wait for their next tick rather than firing the overdue one.
- Interval imports fire on the epoch-aligned ticks that `ScheduledImport.tick_for` names, not
  at "last run + interval", which drifts and would now and then jump over a tick.
"""

from __future__ import annotations

import logging
import math
import os
import socket
from datetime import datetime
from typing import Any

from celery import schedules
from django.conf import settings
from django_celery_beat.schedulers import DatabaseScheduler, ModelEntry
from redis.exceptions import RedisError

DISPATCH_TASK = "importbeat.dispatch_scheduled_import"
LEADER_LEASE = "importbeat:beat:leader"

logger = logging.getLogger("importbeat.beat")


class AlignedInterval(schedules.schedule):
    """An interval due at each multiple of itself since the epoch (the import's ticks)."""

    def is_due(self, last_run_at: datetime) -> schedules.schedstate:
        every = self.run_every.total_seconds()
        now = self.now().timestamp()
        current = math.floor(now / every)
        until_next = (current + 1) * every - now
        due = current > math.floor(last_run_at.timestamp() / every)
        return schedules.schedstate(due, until_next)


class ImportEntry(ModelEntry):
    def __init__(self, model: Any, app: Any = None) -> None:
        super().__init__(model, app)
        schedule = getattr(self, "schedule", None)
        if self.task == DISPATCH_TASK and type(schedule) is schedules.schedule:
            self.schedule = AlignedInterval(
                run_every=schedule.run_every, nowfun=schedule.nowfun, app=schedule._app
            )


class ImportScheduler(DatabaseScheduler):
    Entry = ImportEntry

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        from tasks.locks import Lease

        self.leader = Lease(
            LEADER_LEASE,
            settings.BEAT_LEADER_LEASE_SECONDS,
            f"beat-{socket.gethostname()}-{os.getpid()}",
        )
        self.is_leader = False
        super().__init__(*args, **kwargs)

    # --- leadership -----------------------------------------------------------------------

    def tick(self, *args: Any, **kwargs: Any) -> float:
        if not self._lead():
            # A standby looks again well within the lease, so a take-over is quick.
            return min(self.max_interval, max(settings.BEAT_LEADER_LEASE_SECONDS / 3, 0.5))
        return super().tick(*args, **kwargs)

    def _lead(self) -> bool:
        try:
            held = self.leader.renew() if self.is_leader else self.leader.acquire()
        except RedisError as error:
            # Without Redis there is no broker to dispatch to either; keep the role and retry.
            logger.warning("beat leader lease unreachable: %s", error)
            return False
        if held and not self.is_leader:
            logger.info("beat became the leader token=%s", self.leader.token)
            self.is_leader = True
            self._take_over()
        elif not held and self.is_leader:
            logger.warning("beat lost the leader lease to another beat")
            self.is_leader = False
        return held

    def _take_over(self) -> None:
        """Start leading from the database's view of the schedule, then catch up."""
        from schedules.services import missed_ticks

        self._initial_read = True  # reload every entry: a standby's copy is stale
        self._heap = None
        now = self.app.now()
        for name, entry in self.schedule.items():
            if entry.task == DISPATCH_TASK:
                # Overdue ticks are the catch-up's business, not the regular schedule's.
                entry.last_run_at = entry.model.last_run_at = now
                self._dirty.add(name)
        for imp, tick in missed_ticks(now):
            logger.info("beat catches up import=%s tick=%s", imp.pk, tick.isoformat())
            self.app.send_task(
                DISPATCH_TASK,
                args=[imp.pk],
                kwargs={"scheduled_for": tick.isoformat(), "trigger": "catchup"},
            )

    def close(self) -> None:
        super().close()
        if self.is_leader:
            self.leader.release()
            self.is_leader = False

    # --- dispatch -------------------------------------------------------------------------

    def apply_async(self, entry, producer=None, advance=True, **kwargs):
        if entry.task != DISPATCH_TASK:
            return super().apply_async(entry, producer, advance, **kwargs)
        from schedules.models import ScheduledImport

        # The tick is decided now, when beat fires, not when a worker gets to the message.
        imp = ScheduledImport.objects.filter(pk=entry.args[0]).first()
        entry = self.reserve(entry) if advance else entry
        if imp is not None:
            tick = imp.tick_for(self.app.now())
            entry.kwargs = {**(entry.kwargs or {}), "scheduled_for": tick.isoformat()}
        return super().apply_async(entry, producer, advance=False, **kwargs)
