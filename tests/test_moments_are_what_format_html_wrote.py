"""`display.moment` writes its `<time>` element without format_html (the dashboard shows eighty a
page, the admin's lists one or more a row): the element is, byte for byte, what format_html
wrote, for every zone, offset, microsecond, daylight-saving edge and relative marker."""

from datetime import UTC, datetime, timedelta
from itertools import product
from zoneinfo import ZoneInfo

from django.utils.html import format_html
from django.utils.safestring import SafeString

from schedules import display


def moment_through_format_html(value, zone=None, relative="", empty="-"):
    """display.moment as it was written."""
    if value is None:
        return empty
    utc = value.astimezone(UTC)
    local = value.astimezone(zone or UTC)
    return format_html(
        '<time datetime="{}" title="{} UTC"{}>{} {}</time>',
        utc.isoformat(),
        utc.strftime(display.MOMENT_FORMAT),
        format_html(' data-relative="{}"', relative) if relative else "",
        local.strftime(display.MOMENT_FORMAT),
        local.tzname(),
    )


ZONES = [
    None,
    UTC,
    ZoneInfo("UTC"),
    ZoneInfo("Europe/Berlin"),
    ZoneInfo("America/New_York"),
    ZoneInfo("Asia/Kolkata"),
    ZoneInfo("Asia/Kathmandu"),
    ZoneInfo("Etc/GMT+5"),
    ZoneInfo("Pacific/Chatham"),
]
BERLIN = ZoneInfo("Europe/Berlin")
VALUES = [
    datetime(2026, 12, 2, 19, 37, 5, tzinfo=UTC),
    datetime(2026, 12, 2, 19, 37, 5, 123456, tzinfo=UTC),
    # Berlin's clocks going forward and back, given in Berlin's own time
    datetime(2026, 3, 29, 1, 59, 59, tzinfo=UTC),
    datetime(2026, 3, 29, 3, 0, tzinfo=BERLIN),
    datetime(2026, 10, 25, 2, 30, tzinfo=BERLIN, fold=0),
    datetime(2026, 10, 25, 2, 30, tzinfo=BERLIN, fold=1),
    datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=ZoneInfo("Asia/Tokyo")),
    datetime(2026, 6, 1, 12, tzinfo=ZoneInfo("America/New_York")) + timedelta(microseconds=1),
]
RELATIVES = ["", "ago", "in", "<b>\"&'</b>"]


def test_every_moment_is_what_format_html_wrote():
    for value, zone, relative in product(VALUES, ZONES, RELATIVES):
        written = display.moment(value, zone, relative)
        assert written == moment_through_format_html(value, zone, relative), (value, zone)
        assert isinstance(written, SafeString)


def test_no_moment_is_the_empty_text_given():
    assert display.moment(None) == "-" and display.moment(None, empty="") == ""
