"""The staff dashboard: runs per day as a chart, runs in progress with live progress bars,
and the imports needing attention (a failed or partial last run), each with its reason.

The chart is an inline SVG computed here (no chart library, nothing fetched from a CDN); the
progress bars refresh by polling `live.json`, which the page's small script reads.
"""

from __future__ import annotations

import zoneinfo
from typing import Any

from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils import timezone

from . import attention, stats
from .models import ImportRun

CHART_DAYS = 14
CHART_STATUSES = ("succeeded", "partial", "failed")
CHART_WIDTH, CHART_HEIGHT, CHART_PAD = 700, 220, 28
ACTIVE_LIMIT = 50
ATTENTION_LIMIT = 50


def chart(series: list[dict[str, Any]]) -> dict[str, Any]:
    """Stacked bars (succeeded, partial, failed) per day, in SVG coordinates."""
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


def active_runs() -> list[dict[str, Any]]:
    runs = (
        ImportRun.objects.filter(status__in=ImportRun.ACTIVE_STATUSES)
        .select_related("scheduled_import__owner")
        .order_by("queued_at")[:ACTIVE_LIMIT]
    )
    return [run_progress(run) for run in runs]


def run_progress(run: ImportRun) -> dict[str, Any]:
    percent = None
    if run.bytes_total:
        percent = round(min(run.bytes_read / run.bytes_total, 1.0) * 100, 1)
    return {
        "id": run.pk,
        "import": run.scheduled_import.name,
        "import_id": run.scheduled_import_id,
        "owner": run.scheduled_import.owner.get_username(),
        "status": run.status,
        "attempts": run.attempts,
        "bytes_read": run.bytes_read,
        "bytes_total": run.bytes_total,
        "rows_read": run.rows_read,
        "percent": percent,
        "started_at": run.started_at.isoformat() if run.started_at else None,
    }


@staff_member_required
def index(request: HttpRequest) -> HttpResponse:
    series = stats.runs_per_day(ImportRun.objects.all(), CHART_DAYS, zoneinfo.ZoneInfo("UTC"))
    context = {
        "chart": chart(series),
        "runs": active_runs(),
        "attention": attention.needing_attention(ATTENTION_LIMIT),
        "days": CHART_DAYS,
        "now": timezone.now(),
    }
    return render(request, "dashboard/index.html", context)


def live(request: HttpRequest) -> JsonResponse:
    """What the page polls: runs in progress and imports needing attention (staff only)."""
    if not (request.user.is_active and request.user.is_staff):
        return JsonResponse({"detail": "staff only"}, status=403)
    return JsonResponse(
        {
            "runs": active_runs(),
            "attention": attention.needing_attention(ATTENTION_LIMIT),
            "time": timezone.now().isoformat(),
        }
    )
