"""An import already late when `missed_while_late` came (migration 0036) says it missed at least
one tick of its streak: it said "0 ticks missed since (5 in all)" on every surface, the later
misses adding to that 0 (migration 0037)."""

import pytest
from django.utils import timezone

from schedules.models import ScheduledImport
from tests.factories import make_import
from tests.saved_runs_support import run_data_migration

pytestmark = pytest.mark.django_db


def test_an_import_late_at_the_upgrade_has_missed_at_least_one_tick_of_its_streak(alice):
    late = make_import(alice, "https://example.com/p.csv", name="late")
    on_time = make_import(alice, "https://example.com/q.csv", name="on time", dataset="q")
    ScheduledImport.objects.filter(pk=late.pk).update(
        late_since=timezone.now(), missed_ticks=5, missed_while_late=0
    )
    ScheduledImport.objects.filter(pk=on_time.pk).update(missed_ticks=3)

    run_data_migration("schedules", "0037_imports_late_at_the_upgrade_missed_a_tick")

    counts = dict(ScheduledImport.objects.values_list("name", "missed_while_late"))
    assert counts == {"late": 1, "on time": 0}
