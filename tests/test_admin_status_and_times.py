"""The admin at a glance: statuses as colour badges, one date format on every page, an
import's times in its own timezone with UTC on hover."""

from datetime import UTC, datetime

import pytest
import time_machine

from schedules.models import ScheduledImport
from tests.api_support import SOURCE, make_run
from tests.factories import make_import

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/schedules/scheduledimport/"


def test_statuses_are_colour_badges_in_the_lists_and_the_import_page(admin_client, alice):
    imp = make_import(alice, SOURCE)
    make_run(imp, "partial")
    make_run(imp, "timed_out")
    ScheduledImport.objects.filter(pk=imp.pk).update(last_run_status="failed")

    imports = admin_client.get(CHANGELIST).content.decode()
    runs = admin_client.get("/admin/schedules/importrun/").content.decode()
    page = admin_client.get(f"{CHANGELIST}{imp.pk}/change/").content.decode()

    assert '<span class="ib-badge ib-ok">active</span>' in imports
    assert '<span class="ib-badge ib-bad">failed</span>' in imports
    assert '<span class="ib-badge ib-warn">partial</span>' in runs
    assert '<span class="ib-badge ib-bad">timed out</span>' in runs
    assert '<span class="ib-badge ib-warn">partial</span>' in page  # the recent runs inline
    assert "schedules/admin.css" in page


@time_machine.travel(datetime(2026, 12, 2, 19, 37, 5, tzinfo=UTC), tick=False)
def test_one_date_format_on_a_page_django_fields_and_ours_alike(admin_client, alice):
    imp = make_import(alice, SOURCE)
    ScheduledImport.objects.filter(pk=imp.pk).update(last_run_at=datetime.now(UTC))

    page = admin_client.get(f"{CHANGELIST}{imp.pk}/change/").content.decode()

    # created_at (a plain Django field) and last run (ours) read alike
    assert page.count("2026-12-02 19:37:05 UTC") >= 2
    assert "p.m." not in page and "Dec. 2" not in page


@time_machine.travel(datetime(2026, 12, 2, 19, 37, tzinfo=UTC), tick=False)
def test_an_imports_next_runs_are_in_its_timezone_with_utc_on_hover(admin_client, alice):
    imp = make_import(
        alice, SOURCE, schedule_type="cron", cron_expression="30 2 * * *",
        interval_seconds=None, timezone="Europe/Berlin",
    )  # fmt: skip

    page = admin_client.get(f"{CHANGELIST}{imp.pk}/change/").content.decode()
    listed = admin_client.get(CHANGELIST).content.decode()

    tick = (
        '<time datetime="2026-12-03T01:30:00+00:00" title="2026-12-03 01:30:00 UTC">'
        "2026-12-03 02:30:00 CET</time>"
    )
    assert tick in page and tick in listed
    assert "2026-12-07 02:30:00 CET" in page  # the fifth of the next runs
    assert "2026-12-03T01:30:00+00:00</" not in page  # no raw ISO list any more
