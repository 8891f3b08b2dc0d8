"""`{{ iso|moment }}`, `{{ iso|moment:"ago" }}`: a `<time>` element for an ISO 8601 string or
a datetime, readable without script (`2026-12-02 19:33:14 UTC`), which the dashboard's script
shows in the viewer's timezone."""

from __future__ import annotations

from datetime import datetime

from django import template
from django.utils.dateparse import parse_datetime
from django.utils.safestring import SafeString

from schedules import display

register = template.Library()


@register.filter
def moment(value: str | datetime | None, relative: str = "") -> SafeString | str:
    when = parse_datetime(value) if isinstance(value, str) else value
    return display.moment(when, relative=relative, empty="")
