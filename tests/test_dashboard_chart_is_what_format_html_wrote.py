"""The dashboard's chart is written with str.format and the rows' escaping
(dashboard_rows.escaped): byte for byte what format_html wrote (its escaping of every value
around every one of four hundred values was a tenth of a view's CPU)."""

from datetime import date, timedelta

import pytest
from django.utils.html import format_html, format_html_join

from schedules import dashboard


def written_by_format_html(chart: dict) -> str:
    """The chart as format_html wrote it before (schedules/dashboard.py until this change)."""

    def day_svg(bar: dict, height: int) -> str:
        segments = format_html_join(
            "",
            '<rect class="bar {0}" data-status="{0}" data-count="{1}" x="{2}" y="{3}" width="{4}"'
            ' height="{5}"><title>{6}: {1} {0}</title></rect>',
            (
                (s["status"], s["count"], bar["x"], s["y"], bar["width"], s["height"], bar["date"])
                for s in bar["segments"]
            ),
        )
        return format_html(
            '<g class="day" data-date="{}" data-total="{}">{}'
            '<text x="{}" y="{}" class="tick">{}</text></g>',
            bar["date"], bar["total"], segments, bar["x"], height - 8, bar["label"],
        )  # fmt: skip

    days = format_html_join("\n", "{}", ((day_svg(bar, chart["height"]),) for bar in chart["bars"]))
    return format_html(
        '<svg id="runs-chart" class="chart" role="img" aria-label="runs per day"'
        ' viewBox="0 0 {0} {1}" width="{0}" height="{1}">'
        '<line x1="{2}" y1="{3}" x2="{0}" y2="{3}" class="axis"/>'
        '<text x="2" y="{2}" class="tick">{4}</text>{5}</svg>',
        chart["width"], chart["height"], chart["pad"], chart["baseline"], chart["peak"], days,
    )  # fmt: skip


def series(counts: list[tuple[int, int, int]]) -> list[dict]:
    first = date(2026, 11, 20)
    return [
        {"date": (first + timedelta(days=n)).isoformat(), "succeeded": ok, "partial": part,
         "failed": bad}
        for n, (ok, part, bad) in enumerate(counts)
    ]  # fmt: skip


@pytest.mark.parametrize(
    "counts",
    [
        [],
        [(0, 0, 0)] * 14,
        [(3, 1, 2), (0, 0, 7), (12_345, 67, 890), (1, 0, 0)],
        [(n * 7 % 13, n % 3, n % 5) for n in range(14)],
    ],
)
def test_the_chart_is_byte_for_byte_what_format_html_wrote(counts):
    chart = dashboard.chart(series(counts))

    assert str(dashboard.chart_svg(chart)) == written_by_format_html(chart)
