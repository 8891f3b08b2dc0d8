"""The dashboard page's three tables, row by row, written in Python.

The template engine resolved, filtered, localized and escaped each of the page's seven hundred
values one node at a time: the largest part of a view's CPU at 50 imports needing attention and
20 runs in progress. Each row is now one `str.format` of the text its `{% for %}` loop body
held, byte for byte (tests/test_dashboard_rows_are_what_the_template_showed.py renders the
loops as they were and compares). Every value is escaped as the template escaped it
(`conditional_escape`, without the lazy-text checks of Django's wrappers: a row's values are
plain text, numbers and the SafeStrings of `moment`); numbers are written with str(), as the
template wrote them (no thousands separator); sizes and times go through the same filters
(`filesizeformat`, `moment`).
"""

from __future__ import annotations

import html
from collections.abc import Callable, Iterable
from typing import Any

from django.template.defaultfilters import filesizeformat
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

from .overdue_next_runs import Unplaced
from .templatetags.moments import moment

# A phase whose bar is full while the work goes on (dashboard.js WORKING).
WORKING_PHASES = ("checks", "merge")

RUN_ROW = (
    '\n      <tr data-run-id="{id}">'
    '\n        <td><a href="{url}">#{id}</a></td>'
    '\n        <td>{name}</td><td>{owner}</td><td class="status">{status}</td>'
    '\n        <td><div class="progress{working}" role="progressbar" aria-valuemin="0"'
    ' aria-valuemax="100"'
    '\n                 aria-valuenow="{percent}">'
    '\n              <div class="fill" style="width: {width}%"></div>'
    '\n              <span class="phase">{phase}</span>'
    "\n            </div>"
    '\n            <span class="bytes">{size}</span></td>'
    '\n        <td class="rows">{rows}</td>'
    '\n        <td class="started">{started}</td>'
    "\n      </tr>\n    "
)
NO_RUN = '\n      <tr class="empty"><td colspan="7">No run in progress.</td></tr>\n    '

UPCOMING_ROW = (
    '\n      <tr data-import-id="{id}">'
    "\n        <td>{when}</td>"
    '\n        <td><a href="{url}">{name}</a></td>'
    "\n        <td>{owner}</td><td>{schedule}</td>"
    "\n      </tr>\n    "
)
NO_UPCOMING = '\n      <tr class="empty"><td colspan="4">No run is scheduled.</td></tr>\n    '

ATTENTION_ROW = (
    '\n      <tr data-import-id="{id}">'
    '\n        <td><a href="{url}">{name}</a></td>'
    '\n        <td>{owner}</td><td class="reason">{reason}</td>'
    "\n        <td>{failures}</td><td>{last_run}</td>"
    "\n      </tr>\n    "
)
NO_ATTENTION = '\n      <tr class="empty"><td colspan="5">Nothing needs attention.</td></tr>\n    '


def run_rows(runs: list[dict[str, Any]]) -> SafeString:
    """The runs in progress (dashboard.run_progress), or the row saying there is none."""
    return _rows(runs, _run_row, NO_RUN)


def upcoming_rows(upcoming: list[dict[str, Any]]) -> SafeString:
    """The next runs (dashboard.upcoming_runs), or the row saying none is scheduled."""
    return _rows(upcoming, _upcoming_row, NO_UPCOMING)


def attention_rows(imports: list[dict[str, Any]]) -> SafeString:
    """The imports needing attention (attention.needing_attention), or the row saying none."""
    return _rows(imports, _attention_row, NO_ATTENTION)


# What the page does with the overdue imports its next runs could not place.
UNPLACED_ARE = "they are not among these next runs, however soon beat would run them"


def unplaced_note(unplaced: Unplaced | None) -> SafeString:
    """The words under the next runs of the overdue imports they could not place (how many,
    and since when beat has dispatched nothing), or nothing: they were left out silently."""
    if unplaced is None:
        return mark_safe("")
    # The words are plain text around one time: escaped, then the time put in.
    words = html.escape(unplaced.words("{}", UNPLACED_ARE), quote=False)
    return format_html(words, moment(unplaced.since, "ago"))


def _rows(
    items: Iterable[dict[str, Any]], row: Callable[[dict[str, Any]], str], empty: str
) -> SafeString:
    return mark_safe("".join(map(row, items)) or empty)


def escaped(value: Any) -> str:
    """django.utils.html.conditional_escape for what a row holds (no lazy text)."""
    if type(value) is int or type(value) is float:
        return str(value)  # digits, a sign and a point: nothing to escape
    if hasattr(value, "__html__"):
        return value.__html__()
    return html.escape(str(value))


def _run_row(run: dict[str, Any]) -> str:
    percent, total = run["percent"], run["bytes_total"]
    size = escaped(filesizeformat(run["bytes_read"]))
    return RUN_ROW.format(
        id=escaped(run["id"]),
        url=escaped(run["url"]),
        name=escaped(run["import"]),
        owner=escaped(run["owner"]),
        status=escaped(run["status"]),
        working=" working" if run["phase"] in WORKING_PHASES else "",
        percent="" if percent is None else escaped(percent),
        width=0 if percent is None else escaped(percent),
        phase=escaped(run["phase"]),
        size=f"{size} / {escaped(filesizeformat(total))}" if total else size,
        rows=escaped(run["rows_read"]),
        started=moment(run["started_at"], "ago"),
    )


def _upcoming_row(imp: dict[str, Any]) -> str:
    return UPCOMING_ROW.format(
        id=escaped(imp["id"]),
        when=moment(imp["next_run_at"], "in"),
        url=escaped(imp["url"]),
        name=escaped(imp["name"]),
        owner=escaped(imp["owner"]),
        schedule=escaped(imp["schedule"]),
    )


def _attention_row(imp: dict[str, Any]) -> str:
    return ATTENTION_ROW.format(
        id=escaped(imp["id"]),
        url=escaped(imp["url"]),
        name=escaped(imp["name"]),
        owner=escaped(imp["owner"]),
        reason=escaped(imp["reason"]),
        failures=escaped(imp["consecutive_failures"]),
        last_run=moment(imp["last_run_at"], "ago"),
    )
