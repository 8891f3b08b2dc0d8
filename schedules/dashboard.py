"""The staff dashboard: the cluster's health, runs per day as a chart, runs in progress with
live progress bars and their phase, the next runs, and the imports needing attention (a failed
or partial last run, a late schedule), each with its reason.

The chart is an inline SVG computed here (no chart library, nothing fetched from a CDN); the
progress bars refresh by polling `live.json`, the health panel by polling `health.json` (less
often: it pings the workers). Times go out as ISO 8601 in `<time>` elements, which the page's
script shows in the viewer's own timezone.
"""

from __future__ import annotations

import heapq
import zoneinfo
from datetime import datetime
from functools import cache
from typing import Any

from django.contrib.admin.views.decorators import staff_member_required
from django.contrib.auth import get_user_model
from django.core.cache import cache as shared_cache
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.safestring import SafeString, mark_safe

from common import database_clock

from . import attention, dashboard_rows, display, overdue_next_runs, overview, rows, stats
from .admin_links import admin_page
from .dashboard_rows import escaped
from .models import ImportRun, ScheduledImport

CHART_DAYS = 14
CHART_STATUSES = ("succeeded", "partial", "failed")
CHART_WIDTH, CHART_HEIGHT, CHART_PAD = 700, 220, 28
ACTIVE_LIMIT = 50
ATTENTION_LIMIT = 50
UPCOMING_LIMIT = 10
# How often an open page polls health.json (dashboard.js HEALTH_MS).
HEALTH_POLL_SECONDS = 15
# How long the chart's days before today are reused: they change only while a run queued then
# is still going, and counting them read tens of thousands of runs at a year of history.
CHART_PAST_DAYS_SECONDS = 300
UTC = zoneinfo.ZoneInfo("UTC")


def chart(series: list[dict[str, Any]]) -> dict[str, Any]:
    """Stacked bars (succeeded, partial, failed) per day, in SVG coordinates. A timed-out run
    is a failed one, as the import's counters, the admin and Flower count it: the chart left
    it out, and a day on which every run timed out (a hung source) showed empty."""
    series = [{**day, "failed": day["failed"] + day.get("timed_out", 0)} for day in series]
    peak = max((sum(day[s] for s in CHART_STATUSES) for day in series), default=0) or 1
    slot = (CHART_WIDTH - CHART_PAD) / max(len(series), 1)
    plot_height = CHART_HEIGHT - 2 * CHART_PAD
    bars = []
    for index, day in enumerate(series):
        x = CHART_PAD + index * slot + slot * 0.15
        base = CHART_HEIGHT - CHART_PAD
        segments = []
        for status in CHART_STATUSES:
            height = day[status] / peak * plot_height
            base -= height
            if day[status]:
                segments.append(
                    {"status": status, "count": day[status], "y": round(base, 1),
                     "height": round(height, 1)}
                )  # fmt: skip
        bars.append(
            {"date": day["date"], "label": day["date"][5:], "x": round(x, 1),
             "width": round(slot * 0.7, 1), "segments": segments,
             "total": sum(day[s] for s in CHART_STATUSES)}
        )  # fmt: skip
    return {
        "width": CHART_WIDTH,
        "height": CHART_HEIGHT,
        "baseline": CHART_HEIGHT - CHART_PAD,
        "pad": CHART_PAD,
        "peak": peak,
        "bars": bars,
        "statuses": CHART_STATUSES,
    }


CHART_SVG = (
    '<svg id="runs-chart" class="chart" role="img" aria-label="runs per day"'
    ' viewBox="0 0 {width} {height}" width="{width}" height="{height}">'
    '<line x1="{pad}" y1="{baseline}" x2="{width}" y2="{baseline}" class="axis"/>'
    '<text x="2" y="{pad}" class="tick">{peak}</text>{days}</svg>'
)
DAY_SVG = (
    '<g class="day" data-date="{date}" data-total="{total}">{segments}'
    '<text x="{x}" y="{y}" class="tick">{label}</text></g>'
)
SEGMENT_SVG = (
    '<rect class="bar {status}" data-status="{status}" data-count="{count}" x="{x}" y="{y}"'
    ' width="{width}" height="{height}"><title>{date}: {count} {status}</title></rect>'
)


def chart_svg(chart: dict[str, Any]) -> SafeString:
    """The chart drawn: an SVG of the bars, each segment titled with its day, count and status.

    Written here rather than in the page's template: its four hundred values took a third of
    the page's rendering through the template engine. Numbers are written as SVG reads them
    (str, never localized); every other value is escaped (dashboard_rows.escaped, as
    format_html would).
    """
    days = "\n".join(_day_svg(bar, chart["height"]) for bar in chart["bars"])
    return mark_safe(
        CHART_SVG.format(
            width=escaped(chart["width"]),
            height=escaped(chart["height"]),
            pad=escaped(chart["pad"]),
            baseline=escaped(chart["baseline"]),
            peak=escaped(chart["peak"]),
            days=days,
        )
    )


def _day_svg(bar: dict[str, Any], height: int) -> str:
    x, width, date = escaped(bar["x"]), escaped(bar["width"]), escaped(bar["date"])
    segments = "".join(
        SEGMENT_SVG.format(
            status=escaped(seg["status"]),
            count=escaped(seg["count"]),
            x=x,
            y=escaped(seg["y"]),
            width=width,
            height=escaped(seg["height"]),
            date=date,
        )
        for seg in bar["segments"]
    )
    return DAY_SVG.format(
        date=date,
        total=escaped(bar["total"]),
        segments=segments,
        x=x,
        y=escaped(height - 8),
        label=escaped(bar["label"]),
    )


# The page's two lists of rows read in statements written once (`_select`): the ORM compiled
# them, with their joins and deferred columns, and made a model instance of each row and of
# its import and owner, at every view of the page and every poll of `live.json` (a quarter of
# a view's CPU), to show ten values of each.
ACTIVE_RUNS_SQL = """
    SELECT r.id, r.status, r.attempts, r.bytes_read, r.bytes_total, r.rows_read, r.phase,
           r.started_at, r.scheduled_import_id, i.name, u.{username}, count(*) OVER ()
    FROM {run} r JOIN {imports} i ON i.id = r.scheduled_import_id JOIN {user} u ON u.id = i.owner_id
    WHERE r.status IN ({active})
    ORDER BY r.status <> 'running', r.queued_at
    LIMIT %s
"""  # the runs in progress (partial index run_in_progress_idx): those running first, then the
# oldest waiting; a backlog of queued runs hid the one running past the first 50. And how many
# there are in all, so a list cut short says so.


def active_runs() -> tuple[list[dict[str, Any]], int]:
    """The runs in progress shown (ACTIVE_LIMIT at most), and how many there are in all."""
    rows = _select(ACTIVE_RUNS_SQL, ACTIVE_LIMIT)
    return [run_progress(*row[:-1]) for row in rows], (rows[0][-1] if rows else 0)


def run_progress(
    pk: int, status: str, attempts: int, bytes_read: int, bytes_total: int | None,
    rows_read: int, phase: str, started_at: datetime | None, import_id: int, name: str,
    owner: str,
) -> dict[str, Any]:  # fmt: skip
    percent = None
    if bytes_total:
        percent = round(min(bytes_read / bytes_total, 1.0) * 100, 1)
    return {
        "id": pk,
        "url": admin_page("importrun", pk),
        "import": name,
        "import_id": import_id,
        "owner": owner,
        "status": status,
        "attempts": attempts,
        "bytes_read": bytes_read,
        "bytes_total": bytes_total,
        "rows_read": rows_read,
        "percent": percent,
        # Where a running run is: a bar at 100 % during the merge is still working.
        "phase": (phase or "download") if status == ImportRun.Status.RUNNING else "",
        "started_at": started_at.isoformat() if started_at else None,
    }


# The next runs of active imports not overdue, soonest first, through the index import_due_idx:
# each is listed at its `next_run_at` (overdue_next_runs).
UPCOMING_SQL = """
    SELECT i.id, i.name, u.{username}, i.next_run_at,
           i.schedule_type, i.cron_expression, i.interval_seconds, i.timezone, i.catchup
    FROM {imports} i JOIN {user} u ON u.id = i.owner_id
    WHERE i.status = {active_import} AND i.next_run_at > %s
    ORDER BY i.next_run_at, i.id
    LIMIT %s
"""
# The overdue imports among the next runs shown, by id.
UPCOMING_OVERDUE_SQL = """
    SELECT i.id, i.name, u.{username}, i.next_run_at,
           i.schedule_type, i.cron_expression, i.interval_seconds, i.timezone, i.catchup
    FROM {imports} i JOIN {user} u ON u.id = i.owner_id
    WHERE i.id = ANY(%s::bigint[])
"""


def upcoming_runs() -> list[dict[str, Any]]:
    """The next runs beat makes of active imports, soonest first (next_runs)."""
    return next_runs()[0]


def next_runs() -> tuple[list[dict[str, Any]], overdue_next_runs.Unplaced | None]:
    """The next runs beat makes of active imports, soonest first (in an outage, never a tick
    older than the grace period, which beat will not fire), and the overdue imports that could
    not be placed among them (none: every import was).

    Chosen by that run, not by `next_run_at`: the ten soonest of the imports not overdue (by the
    column, which is their next run) and the soonest of the overdue ones, whose next runs are
    worked out per group (overdue_next_runs). Chosen by the column, an import whose missed 10:00
    beat skips to 13:00 took the place of one due at 12:40. Two statements, three when an
    overdue import is among those shown, one more when the overdue groups were too many to work
    out: the imports of those left were left out without a word.
    """
    cutoff = overdue_next_runs.overdue_cutoff()
    found = {row[0]: row for row in _select(UPCOMING_SQL, cutoff, UPCOMING_LIMIT)}
    soonest = [(_next_run(row), pk) for pk, row in found.items()]
    overdue = overdue_next_runs.overdue_groups(cutoff, first=UPCOMING_LIMIT)
    for group in overdue.groups:
        soonest.extend((group.next_run, pk) for pk in group.ids)
    chosen = heapq.nsmallest(UPCOMING_LIMIT, soonest)
    shown_overdue = [pk for _next, pk in chosen if pk not in found]
    if shown_overdue:
        found.update((row[0], row) for row in _select(UPCOMING_OVERDUE_SQL, shown_overdue))
    upcoming = []
    for next_run, pk in chosen:
        row = found.get(pk)
        if row is None:
            continue  # deleted between the two statements
        _pk, name, owner, _due, kind, cron, interval, zone, _catchup = row
        upcoming.append(
            {
                "id": pk,
                "url": admin_page("scheduledimport", pk),
                "name": name,
                "owner": owner,
                "schedule": display.schedule_words_of(kind, cron, interval, zone),
                "next_run_at": next_run.isoformat(),
            }
        )
    return upcoming, overdue.unplaced


def _next_run(row: tuple) -> datetime:
    _pk, _name, _owner, due, kind, cron, interval, zone, catchup = row
    return display.next_run_of(kind, cron, interval, zone, catchup, due)


def _select(statement: str, *params: Any) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(_statement(statement), list(params))
        return cursor.fetchall()


@cache
def _statement(template: str) -> str:
    user = get_user_model()
    quote = connection.ops.quote_name
    return template.format(
        run=quote(ImportRun._meta.db_table),
        imports=quote(ScheduledImport._meta.db_table),
        user=quote(user._meta.db_table),
        username=rows.column(user, user.USERNAME_FIELD),
        active=rows.literals(ImportRun.ACTIVE_STATUSES),
        active_import=rows.literals([ScheduledImport.Status.ACTIVE.value]),
    )


def health_panel(outside_max_age: float = 0) -> list[dict[str, Any]]:
    """Beat, workers, broker, late imports, the backlog, Redis, processed files and
    notifications, each with a state (ok, warn, bad) and words; all but the last five may be up
    to `outside_max_age` seconds old (overview.outside)."""
    health = overview.cluster_health(outside_max_age)
    beat, workers, broker = health["beat"], health["workers"], health["broker"]
    queue = ", ".join(f"{depth} waiting" for depth in health["queue"].values() if depth is not None)
    late, processed = health["late_imports"], health["processed_files"]
    notifications = health["notifications"]
    last_tick = beat.get("last_tick")
    return [
        {
            "name": "beat",
            # Alive with its host's clock off: a warning, in health's words.
            "state": "ok" if beat["ok"] else ("warn" if beat.get("alive") else "bad"),
            "text": beat.get("message")
            or (f"leader {beat['leader']}" if beat.get("leader") else "no beat is leading"),
            "time": last_tick.isoformat() if last_tick else None,
            "time_label": "last tick",
        },
        {
            "name": "workers",
            "state": _workers_state(workers),
            "text": _workers_text(workers),
        },
        {
            "name": "broker",
            "state": "ok" if broker["ok"] else "bad",
            "text": f"up, {queue}" if broker["ok"] else f"down: {broker['error']}",
        },
        {
            "name": "late imports",
            "state": "warn" if late else "ok",
            "text": f"{late} late" if late else "none late",
        },
        {
            "name": "backlog",
            "state": "ok" if health["backlog"]["ok"] else "warn",
            "text": _backlog_text(health["backlog"]),
        },
        {
            "name": "redis",
            "state": "ok" if health["redis"]["ok"] else "warn",
            "text": _redis_text(health["redis"]),
        },
        {
            "name": "processed files",
            "state": "ok" if processed["ok"] else "warn",
            "text": _processed_files_text(processed),
        },
        {
            "name": "notifications",
            "state": "ok" if notifications["ok"] else "warn",
            "text": notifications.get("message") or "delivered in their time",
        },
    ]


def _workers_state(workers: dict[str, Any]) -> str:
    if workers["ok"]:
        return "ok"
    # Answering, none broken, a host's clock off: a warning.
    return "warn" if workers.get("clocks_off") and not workers.get("broken") else "bad"


def _workers_text(workers: dict[str, Any]) -> str:
    if workers["ok"]:
        return f"{workers['count']} answering: {', '.join(workers['workers'])}"
    if workers.get("broken"):
        # Its database or Redis away (health says which); it was shown as none answering.
        names = ", ".join(broken["worker"] for broken in workers["broken"])
        return f"{workers['count']} answering, these unable to run imports: {names}"
    return workers.get("message") or "no worker answers"


def _backlog_text(check: dict[str, Any]) -> str:
    if check["ok"]:
        return "no tick waits for a worker"
    return check.get("message") or "not known"


def _redis_text(check: dict[str, Any]) -> str:
    if check["ok"]:
        return "keeps its keys"
    return check.get("message") or "its memory policy could not be read"


def _processed_files_text(check: dict[str, Any]) -> str:
    if check["ok"]:
        return "cleaned in their time"
    return check.get("message") or "the last retention's figures could not be read"


def chart_series() -> list[dict[str, Any]]:
    """Runs per day for the chart: today's counted at every view, the days before it counted
    at most CHART_PAST_DAYS_SECONDS ago (13-17 ms of every view at a million runs, against
    1-2 ms for today's alone). Now is the database's, as the runs' times are."""
    now = database_clock.now()
    key = f"dashboard:chart:{now.astimezone(UTC).date().isoformat()}"
    series = shared_cache.get(key)
    if series is None:
        series = stats.runs_per_day(ImportRun.objects.all(), CHART_DAYS, UTC, now)
        shared_cache.set(key, series, CHART_PAST_DAYS_SECONDS)
        return series
    return [*series[:-1], *stats.runs_per_day(ImportRun.objects.all(), 1, UTC, now)]


def page_data() -> dict[str, Any]:
    """What the page shows, before it is written out."""
    return {
        "chart": chart_svg(chart(chart_series())),
        "chart_statuses": CHART_STATUSES,
        **_listed(),
        # The answers of the last poll, if recent: no older than what an open page shows
        # between two polls of health.json.
        "health": health_panel(outside_max_age=HEALTH_POLL_SECONDS),
        **_next_runs(),
        "days": CHART_DAYS,
        "now": timezone.now(),
    }


@staff_member_required
def index(request: HttpRequest) -> HttpResponse:
    data = page_data()
    # The tables' rows are written in Python (dashboard_rows), the rest by the template.
    tables = {
        "run_rows": dashboard_rows.run_rows(data["runs"]),
        "upcoming_rows": dashboard_rows.upcoming_rows(data["upcoming"]),
        "attention_rows": dashboard_rows.attention_rows(data["attention"]),
    }
    return render(request, "dashboard/index.html", {**data, **tables})


def _staff(request: HttpRequest) -> bool:
    return request.user.is_active and request.user.is_staff


def health(request: HttpRequest) -> JsonResponse:
    """What the health panel polls (staff only)."""
    if not _staff(request):
        return JsonResponse({"detail": "staff only"}, status=403)
    return JsonResponse({"health": health_panel(), **_next_runs()})


def _next_runs() -> dict[str, Any]:
    """The next runs, and the overdue imports they could not place: how many and since when
    (`unplaced`, or None), and the words the page says of them (`upcoming_cut`, its one writer
    dashboard_rows; empty when none). They were left out without a word."""
    upcoming, unplaced = next_runs()
    return {
        "upcoming": upcoming,
        "unplaced": unplaced and {"imports": unplaced.imports, "since": unplaced.since.isoformat()},
        "upcoming_cut": dashboard_rows.unplaced_note(unplaced),
    }


def live(request: HttpRequest) -> JsonResponse:
    """What the page polls: runs in progress and imports needing attention (staff only)."""
    if not _staff(request):
        return JsonResponse({"detail": "staff only"}, status=403)
    listed = _listed()
    # The imports needing attention as the page writes them (dashboard_rows, the one writer of
    # their markup): an open page showed the list it was rendered with, for good.
    rows = str(dashboard_rows.attention_rows(listed["attention"]))
    return JsonResponse({**listed, "attention_rows": rows, "time": timezone.now().isoformat()})


def _listed() -> dict[str, Any]:
    """The two lists the page keeps up to date, each with how many there are in all: a list
    cut at its limit said nothing of the rest (a late import missing from it while the health
    panel counted one)."""
    runs, runs_total = active_runs()
    return {
        "runs": runs,
        "runs_total": runs_total,
        "attention": attention.needing_attention(ATTENTION_LIMIT),
        "attention_total": attention.count_needing_attention(),
    }
