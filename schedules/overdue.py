"""Imports overdue while no beat runs: their owners hear that they are late.

Beat notices a missed tick when it gets to it, and reconciliation (which beat schedules) finds
ticks without a run. While no beat ran at all, the API, the admin and health said `late`, but
no owner heard of it until beat was back: a beat that died at midnight left every 2 AM import
unrun, unsaid. A worker that finds beat's last tick old (project.beat_watch) has this start the
late streak of each import overdue by more than the grace period, and tell its owner, once a
streak, as beat would have. Beat, back, counts the ticks missed into the same streak and tells
nobody again (schedules.dispatch keeps a streak's `late_since`).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction

from common import database_clock

from . import import_locks, notifications
from .models import ScheduledImport

logger = logging.getLogger("importbeat.reconcile")


def start_late_streaks(now: datetime | None = None) -> list[int]:
    """Start the late streak of every active import whose next tick is overdue by more than
    MISSED_TICK_GRACE_SECONDS (what the API already calls late) and that is in none; its
    owner is told once the streak is committed. The ids of the imports, in order."""
    now = now or database_clock.now()
    overdue_before = now - timedelta(seconds=settings.MISSED_TICK_GRACE_SECONDS)
    with transaction.atomic(), connection.cursor() as cursor:
        # Beat advancing an import meanwhile moves its next tick, which PostgreSQL checks again
        # on the row beat committed, as it locks it.
        overdue = import_locks.lock_in_id_order(
            ScheduledImport.objects.filter(
                status=ScheduledImport.Status.ACTIVE,
                late_since__isnull=True,
                next_run_at__lt=overdue_before,
            )
        )
        # A streak of its own: the last streak's count (`missed_while_late` is left as it was
        # when a streak ends) said "missed 5 tick(s) since it turned late" of last week's.
        cursor.execute(
            f"UPDATE {ScheduledImport._meta.db_table} SET late_since = %s, missed_while_late = 0"
            " WHERE id = ANY(%s::bigint[]) RETURNING id",
            [now, overdue],
        )
        started = sorted(row[0] for row in cursor.fetchall())
    if started:
        logger.error("no beat dispatched imports: %s overdue turned late, ids %s",
                     len(started), started[:20])  # fmt: skip
        notifications.on_imports_late(started)
    return started
