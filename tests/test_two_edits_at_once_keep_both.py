"""Two edits of one import at once (API, admin, code) keep each other's fields: each applies the
fields it was given to the import as it is when it saves, not as it read it. The later of two
PATCHes of different fields wrote the earlier one's fields back as it had read them, and a
pause was undone by an edit saved after it: told 200 "paused", the import fired on."""

from __future__ import annotations

import pytest
from django_celery_beat.models import PeriodicTask

from schedules import services
from schedules.models import ScheduledImport
from tests.api_support import SOURCE
from tests.factories import make_import

pytestmark = pytest.mark.django_db


def read(imp: ScheduledImport) -> ScheduledImport:
    """The import as a request reads it before it saves (get_object)."""
    return ScheduledImport.objects.get(pk=imp.pk)


def test_an_edit_saved_after_another_keeps_the_others_fields(alice):
    # Given an import two clients read
    imp = make_import(alice, SOURCE, schedule_type="cron", cron_expression="30 2 * * *",
                      interval_seconds=None)  # fmt: skip
    first, second = read(imp), read(imp)

    # When one changes its schedule, then the other its description
    services.update_import(
        first, schedule_type="interval", interval_seconds=900, cron_expression=""
    )
    services.update_import(second, description="nightly prices")

    # Then both changes hold, and the beat entry is the interval's
    now = read(imp)
    assert (now.schedule_type, now.interval_seconds, now.description) == (
        "interval", 900, "nightly prices"
    )  # fmt: skip
    assert PeriodicTask.objects.get(pk=now.periodic_task_id).interval is not None


def test_a_pause_is_not_undone_by_an_edit_that_read_the_import_before_it(alice):
    imp = make_import(alice, SOURCE)
    editing = read(imp)

    paused = services.pause_import(read(imp))
    services.update_import(editing, description="x")

    now = read(imp)
    assert paused.status == "paused" and (now.status, now.description) == ("paused", "x")
    assert now.next_run_at is None
    assert not PeriodicTask.objects.get(pk=now.periodic_task_id).enabled
    # ... and the caller's own instance is the import as it is now
    assert (editing.status, editing.description) == ("paused", "x")
