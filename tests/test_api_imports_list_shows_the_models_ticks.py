"""`GET /imports/` keeps each schedule's words and next ticks per schedule rather than working
them out for every row (issue 15); what it shows is still the model's own answer, for every
time zone, and follows a changed schedule at once."""

import pytest
from rest_framework.fields import DateTimeField

from schedules import services
from schedules.models import ScheduledImport
from tests.api_support import API, SOURCE, client_for
from tests.factories import make_import

pytestmark = pytest.mark.django_db

DAILY = {"schedule_type": "cron", "cron_expression": "30 2 * * *"}


def shown(alice) -> dict[int, dict]:
    body = client_for(alice).get(f"{API}/imports/").json()
    return {row["id"]: row for row in body["results"]}


def expected(imp: ScheduledImport) -> tuple[str, list[str]]:
    imp.refresh_from_db()
    ticks = [DateTimeField().to_representation(tick) for tick in imp.next_runs(5)]
    return imp.schedule_description, ticks


def test_each_row_shows_its_own_schedule_in_its_zone(alice):
    berlin = make_import(alice, SOURCE, name="berlin", timezone="Europe/Berlin", **DAILY)
    tokyo = make_import(alice, SOURCE, name="tokyo", timezone="Asia/Tokyo", **DAILY)
    hourly = make_import(alice, SOURCE, name="hourly")

    rows = shown(alice)

    for imp in (berlin, tokyo, hourly):
        row = rows[imp.pk]
        assert (row["schedule_description"], row["next_runs"]) == expected(imp)
    assert rows[berlin.pk]["next_runs"] != rows[tokyo.pk]["next_runs"]


def test_a_changed_schedule_shows_at_once(alice):
    imp = make_import(alice, SOURCE, timezone="Europe/Berlin", **DAILY)
    shown(alice)

    services.update_import(imp, cron_expression="0 6 * * 1")

    row = shown(alice)[imp.pk]
    assert (row["schedule_description"], row["next_runs"]) == expected(imp)
    assert "06:00" in row["schedule_description"]


def test_a_paused_import_lists_no_next_runs(alice):
    imp = make_import(alice, SOURCE, **DAILY)
    services.pause_import(imp)

    assert shown(alice)[imp.pk]["next_runs"] == []
