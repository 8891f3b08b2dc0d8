"""How a status, a moment and a duration are shown: colour badges, one date format in the
import's timezone (UTC on hover), durations to the millisecond. The admin uses all three; the
dashboard's `{{ …|moment }}` the moment, which its script then shows in the viewer's zone."""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo
from functools import lru_cache
from html import escape
from typing import TYPE_CHECKING

from django.conf import settings
from django.utils.html import format_html
from django.utils.safestring import SafeString

from common import database_clock

if TYPE_CHECKING:
    from .models import ScheduledImport
    from .ticks import Schedule

# The badge's colour class per status, of runs and of imports.
TONES = {
    "succeeded": "ok", "active": "ok",
    "partial": "warn", "retrying": "warn", "paused": "warn",
    "failed": "bad", "timed_out": "bad",
    "running": "busy", "queued": "busy",
    "skipped": "muted", "cancelled": "muted",
}  # fmt: skip
# Like project/formats/en (Django's DATETIME_FORMAT), in the strftime form a zone can change.
MOMENT_FORMAT = "%Y-%m-%d %H:%M:%S"


def badge(status: str) -> SafeString | str:
    if not status:
        return "-"
    return format_html(
        '<span class="ib-badge ib-{}">{}</span>',
        TONES.get(status, "muted"),
        status.replace("_", " "),
    )


def moment(
    value: datetime | None, zone: tzinfo | None = None, relative: str = "", empty: str = "-"
) -> SafeString | str:
    """`2026-12-03 02:30:00 CET`, in `zone` (UTC by default), with the UTC time on hover.

    `relative` ("in" or "ago") asks the dashboard's script to add "(in 8 min)" / "(3 min ago)".
    """
    if value is None:
        return empty
    # What format_html wrote, without its lazy-text checks around every value: the dashboard
    # shows eighty of these a page and the admin's lists one or more a row.
    utc = value.astimezone(UTC)
    utc_text = utc.strftime(MOMENT_FORMAT)
    if zone is None or zone is UTC:
        local, local_text = utc, utc_text
    else:
        local = value.astimezone(zone)
        local_text = local.strftime(MOMENT_FORMAT)
    marked = f' data-relative="{escape(relative)}"' if relative else ""
    return SafeString(
        f'<time datetime="{escape(utc.isoformat())}" title="{escape(utc_text)} UTC"{marked}>'
        f"{escape(local_text)} {escape(local.tzname())}</time>"
    )


def session(pid: int, who: str, state: str, milliseconds: int, query: str) -> str:
    """A database session another one waits for, in an operator's words (beat's log, migrate's
    message): its pid, who it is, what it is doing and for how long, and its statement."""
    return f"pid {pid} ({who}, {state} for {duration(milliseconds)}: {query})"


def duration(milliseconds: int | None) -> str:
    """65 ms, 1.234 s, 2 min 05.310 s, 1 h 02 min 05.310 s: never rounded to the minute."""
    if milliseconds is None:
        return "-"
    if milliseconds < 1000:
        return f"{milliseconds} ms"
    if milliseconds < 60_000:
        return f"{milliseconds / 1000:.3f} s"
    minutes, ms = divmod(milliseconds, 60_000)
    seconds = f"{ms / 1000:06.3f} s"
    if minutes < 60:
        return f"{minutes} min {seconds}"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min {seconds}"


# --- schedules in words and ticks, for lists ------------------------------------------------
# `GET /imports/` showed every import's schedule in words and its next five ticks: four cron
# steps and a cron-descriptor parse per row were a third of the request. Both follow from a
# few fields that imports share (a few hundred rules among thousands of imports), so they are
# kept per process, keyed by exactly what decides them. The answer is still the model's own
# (`schedule_description`, `next_runs`): nothing here evaluates a schedule.


def schedule_words(imp: ScheduledImport) -> str:
    """`imp.schedule_description`, kept per (type, rule, interval, zone, shortest interval)."""
    return _schedule_words(
        imp.schedule_type, imp.cron_expression, imp.interval_seconds, imp.timezone,
        settings.MIN_INTERVAL_SECONDS,
    )  # fmt: skip


def schedule_words_of(schedule_type: str, cron: str, interval: int | None, zone: str) -> str:
    """`schedule_description` of an import with this schedule, kept as schedule_words."""
    return _schedule_words(schedule_type, cron, interval, zone, settings.MIN_INTERVAL_SECONDS)


def next_ticks(imp: ScheduledImport, count: int = 5) -> list[datetime]:
    """`imp.next_runs(count)`: kept per (schedule, first tick) when it starts at the next run
    beat makes (an active import's list: `next_run_listed`, which reads the clock only to
    know which tick that is), computed afresh otherwise."""
    first = next_run(imp)
    if first is None:
        return imp.next_runs(count)
    key = (imp.schedule_type, imp.cron_expression, imp.interval_seconds, imp.timezone)
    return list(_ticks_from(*key, settings.MIN_INTERVAL_SECONDS, first, count))


def next_run(imp: ScheduledImport) -> datetime | None:
    """`imp.next_run_listed()`, kept per (schedule, catch-up, tick due, second). During an
    outage every overdue row of a list asked its schedule where its first run falls, twice
    (next_run_at, next_runs): two cron steps a row, where the ticks after it were kept. Imports
    of one schedule missed from one tick share it. Exact to the second: ticks are whole
    seconds, so a moment and its second lie on the same side of each."""
    if imp.status != imp.Status.ACTIVE or imp.next_run_at is None:
        return None  # (as next_run_listed: beat fires no tick of it)
    return next_run_of(
        imp.schedule_type, imp.cron_expression, imp.interval_seconds, imp.timezone,
        imp.catchup, imp.next_run_at,
    )  # fmt: skip


def next_run_of(
    schedule_type: str,
    cron: str,
    interval: int | None,
    zone: str,
    catchup: str,
    next_run_at: datetime,
) -> datetime:
    """`next_run_listed` of an active import with these fields (the dashboard reads them as a
    row): never a tick older than the grace period, which beat will not fire as itself."""
    return _next_run(
        schedule_type, cron, interval, zone, settings.MIN_INTERVAL_SECONDS,
        settings.MISSED_TICK_GRACE_SECONDS, catchup, next_run_at,
        database_clock.now().replace(microsecond=0),
    )  # fmt: skip


def _unsaved(schedule_type: str, cron: str, interval: int | None, zone: str) -> ScheduledImport:
    from .models import ScheduledImport

    return ScheduledImport(
        schedule_type=schedule_type, cron_expression=cron, interval_seconds=interval, timezone=zone
    )


@lru_cache(maxsize=4096)
def _schedule_words(
    schedule_type: str, cron: str, interval: int | None, zone: str, _shortest: int
) -> str:
    return _unsaved(schedule_type, cron, interval, zone).schedule_description


@lru_cache(maxsize=4096)
def _next_run(
    schedule_type: str,
    cron: str,
    interval: int | None,
    zone: str,
    _shortest: int,
    _grace: int,
    catchup: str,
    due: datetime,
    at: datetime,
) -> datetime:
    from .models import ScheduledImport

    schedule = _schedule(schedule_type, cron, interval, zone, _shortest)
    return ScheduledImport.first_run_of(schedule, catchup, due, at)


@lru_cache(maxsize=4096)
def _schedule(
    schedule_type: str, cron: str, interval: int | None, zone: str, _shortest: int
) -> Schedule:
    return _unsaved(schedule_type, cron, interval, zone).schedule


@lru_cache(maxsize=16384)
def _ticks_from(
    schedule_type: str,
    cron: str,
    interval: int | None,
    zone: str,
    _shortest: int,
    start: datetime,
    count: int,
) -> tuple[datetime, ...]:
    return tuple(_unsaved(schedule_type, cron, interval, zone).ticks_from(start, count))
