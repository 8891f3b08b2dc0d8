"""Ticks whose runs waited for a worker while their import ran anyway: skipped, not run again.

With no worker for a while (a failed deploy at night, a cluster too small for a burst) beat
keeps dispatching on time, so an import on a one-minute schedule has 120 runs queued after two
hours. Each ran in turn when workers came back: the same file loaded 120 times, and a cluster of
many such imports had a queue it could not drain before the next ticks came in.

A tick whose run waited for a worker past the grace period (MISSED_TICK_GRACE_SECONDS, as beat
counts a missed tick) is skipped when the run of its import that finished last had started
after the tick was queued: that run took the file later than the tick asked for, so the tick has
nothing left to do. A tick that came while that run was running (`overlap: queue`) still runs
after it. The skipped tick counts as a missed tick of its import, as the ticks beat missed do,
and `catchup` keeps its meaning: the waiting ticks run once, the first one a worker reaches.
Under a steady backlog an import still runs, about once per queue wait: the first of its ticks
reached after each run finished was queued before that run started. Manual runs are never
skipped so: someone asked for each. Beat skips most such ticks before they are sent
(schedules.dispatch); this catches the rest: ticks queued behind a retry, or before an upgrade.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Case, F, When

from common import database_clock

from .models import ImportRun, ScheduledImport
from .services import skip_run

SCHEDULED = (ImportRun.Trigger.SCHEDULE, ImportRun.Trigger.CATCHUP)


def skip_if_ran_since(run: ImportRun, now: datetime | None = None) -> str | None:
    """Skip `run` (loaded with its import) if it waited past the grace period and the import's
    last finished run started after it was queued. Returns the reason when it skipped it."""
    imp: ScheduledImport = run.scheduled_import
    queued, ran_at = run.queued_at, imp.last_run_at
    if (
        run.status != ImportRun.Status.QUEUED
        or run.trigger not in SCHEDULED
        or ran_at is None
        or ran_at <= queued
    ):
        return None
    now = now or database_clock.now()
    waited = now - queued
    if waited <= timedelta(seconds=settings.MISSED_TICK_GRACE_SECONDS):
        return None
    last = _run_that_finished_at(imp, ran_at)
    if last is None or last[1] is None or last[1] <= queued:
        # It took the file before this tick came: under `overlap: queue` the tick runs after it.
        return None
    reason = (
        f"skipped: waited {_wait_in_words(waited)} for a worker (its tick was "
        f"{run.scheduled_for or queued:%Y-%m-%d %H:%M:%S} UTC), and run {last[0]} of this import "
        f"took the file since (started at {last[1]:%H:%M:%S} UTC)"
    )
    if not skip_run(run, reason):
        return None
    ScheduledImport.objects.filter(pk=imp.pk).update(
        missed_ticks=F("missed_ticks") + 1,
        # (a tick skipped so starts no late streak, but adds to one under way)
        missed_while_late=Case(
            When(late_since__isnull=True, then=F("missed_while_late")),
            default=F("missed_while_late") + 1,
        ),
    )
    return reason


def _run_that_finished_at(
    imp: ScheduledImport, finished_at: datetime
) -> tuple[int, datetime | None] | None:
    """The run that finished last, and when it started. Newest queued first (run_history_idx):
    it was queued before the ticks that waited behind it, a few rows down."""
    return (
        ImportRun.objects.filter(scheduled_import_id=imp.pk, finished_at=finished_at)
        .order_by("-queued_at")
        .values_list("pk", "started_at")
        .first()
    )


def _wait_in_words(waited: timedelta) -> str:
    seconds = int(waited.total_seconds())
    if seconds < 120:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 120:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60:02d} min"
