"""`GET /imports/` during an outage works out where each schedule's first run falls once, not
for every row, and still shows the model's own answer.

Regression (review of "next_runs during an outage list what beat will fire"): every overdue
row asked its schedule for its first run twice (`next_run_at`, then `next_runs`), two cron
steps a row past the ticks kept per schedule (schedules.display): the per-row cost the cache
had removed came back exactly when an outage makes every import overdue and people look at
the list (40 rows of one schedule: 80 steps a request, 0 before).
"""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from rest_framework.fields import DateTimeField

from common import database_clock
from schedules.models import ScheduledImport
from schedules.ticks import Schedule
from tests.api_support import API, SOURCE, client_for
from tests.factories import make_import

pytestmark = pytest.mark.django_db

ROWS = 40
HOURLY_IN_BERLIN = {
    "schedule_type": "cron", "cron_expression": "0 * * * *", "timezone": "Europe/Berlin"
}  # fmt: skip


def count_schedule_steps(monkeypatch) -> list:
    """From now on, every walk of a schedule's ticks (Schedule.ticks_after), noted."""
    steps: list = []
    walk = Schedule.ticks_after

    def noted(schedule: Schedule, moment):
        steps.append(moment)
        return walk(schedule, moment)

    monkeypatch.setattr(Schedule, "ticks_after", noted)
    return steps


@pytest.mark.parametrize("catchup", ["coalesce", "skip"])
def test_a_list_of_imports_beat_missed_works_out_each_schedule_once(alice, catchup, monkeypatch):
    # Given alice's hourly imports, every one missed by beat for two and a half hours
    for n in range(ROWS):
        make_import(alice, SOURCE, name=f"i{n}", dataset=f"d{n}", catchup=catchup,
                    **HOURLY_IN_BERLIN)  # fmt: skip
    due = ScheduledImport.objects.values_list("next_run_at", flat=True).first()
    client = client_for(alice)
    with time_machine.travel(due + timedelta(hours=2, minutes=30), tick=False):
        database_clock._measured = None
        first = client.get(f"{API}/imports/?page_size={ROWS}").json()["results"]

        # When she lists them again
        steps = count_schedule_steps(monkeypatch)
        rows = client.get(f"{API}/imports/?page_size={ROWS}").json()["results"]

        # Then no row worked its schedule out again ...
        assert len(steps) < ROWS, f"{len(steps)} steps for {ROWS} rows"
        # ... and each shows the model's own first run and ticks
        assert rows == first
        tick = DateTimeField().to_representation
        for row in rows:
            imp = ScheduledImport.objects.get(pk=row["id"])
            assert row["next_run_at"] == tick(imp.next_run_listed())
            assert row["next_runs"] == [tick(moment) for moment in imp.next_runs(5)]
