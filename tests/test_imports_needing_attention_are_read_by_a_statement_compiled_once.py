"""The imports needing attention, which every dashboard view and every poll of `live.json` lists,
and the count of late imports (the health check's, the dashboard's, `/metrics`') are read by
statements the ORM compiles once per process from the reasons' conditions (the ones
`?needs_attention=` and `?late=` filter by); only the overdue bound is bound at each call."""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.test import override_settings
from django.utils import timezone

from schedules import attention
from schedules.models import ScheduledImport
from tests.api_support import API, SOURCE, client_for, tables_compiled
from tests.factories import make_import

pytestmark = pytest.mark.django_db

NOON = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def names(listed: list[dict]) -> list[str]:
    return [imp["name"] for imp in listed]


def test_the_list_compiles_no_query_once_its_statement_is_written(alice):
    failing = make_import(alice, SOURCE, name="failing", dataset="f")
    ScheduledImport.objects.filter(pk=failing.pk).update(
        consecutive_failures=3, last_run_status="failed", last_run_at=timezone.now()
    )
    attention.needing_attention()
    attention.late_imports_count()

    # When the list and the count are read again (a view, a poll)
    with tables_compiled() as compiled:
        listed = attention.needing_attention()
        late = attention.late_imports_count()

    # Then the list shows the failing import in the reasons' words, none is late, and the ORM
    # compiled nothing
    assert names(listed) == ["failing"]
    assert listed[0]["reason"] == "last run failed (3 failures in a row)"
    assert late == 0
    assert compiled == []


@override_settings(MISSED_TICK_GRACE_SECONDS=60)
def test_the_overdue_bound_is_the_time_of_each_call(alice):
    with time_machine.travel(NOON, tick=False):
        imp = make_import(alice, SOURCE, name="hourly", interval_seconds=3600)
        ScheduledImport.objects.filter(pk=imp.pk).update(
            next_run_at=NOON + timedelta(minutes=10), late_since=None
        )
        # Given the list and the count read (their statements compiled) while the next run
        # was ahead
        assert attention.needing_attention() == []
        assert attention.late_imports_count() == 0

    # When the next run is more than the grace past, with no tick fired
    with time_machine.travel(NOON + timedelta(minutes=12), tick=False):
        listed = attention.needing_attention()
        late = attention.late_imports_count()

    # Then the same statements list and count it as late
    assert names(listed) == ["hourly"]
    assert listed[0]["reasons"][0]["code"] == "late"
    assert late == 1


def test_the_list_and_the_filter_agree(alice):
    failing = make_import(alice, SOURCE, name="failing", dataset="f")
    partial = make_import(alice, SOURCE, name="partial", dataset="p")
    make_import(alice, SOURCE, name="fine", dataset="ok")
    ScheduledImport.objects.filter(pk=failing.pk).update(
        consecutive_failures=1, last_run_status="timed_out", last_run_at=timezone.now()
    )
    ScheduledImport.objects.filter(pk=partial.pk).update(
        last_run_status="partial", last_run_at=timezone.now()
    )

    listed = attention.needing_attention()
    filtered = client_for(alice).get(f"{API}/imports/?needs_attention=true").json()["results"]

    assert sorted(names(listed)) == sorted(i["name"] for i in filtered) == ["failing", "partial"]
