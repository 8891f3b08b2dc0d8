"""Creating or editing an import does not bump django-celery-beat's one "a periodic task
changed" row: beat does not read imports' entries from it (project.beat), and every bump of
that single row made creating many imports in one transaction slow down quadratically
(issue 15). The other entries, edited in the admin, still bump it, so beat re-reads them."""

import pytest
from django_celery_beat.models import IntervalSchedule, PeriodicTask, PeriodicTasks

from schedules import services
from tests.api_support import SOURCE
from tests.factories import make_import

pytestmark = pytest.mark.django_db


def test_creating_editing_and_pausing_imports_leaves_the_change_row_alone(alice):
    # The first import creates its crontab row; a new schedule row bumps, as it must.
    make_import(alice, SOURCE, name="first", schedule_type="cron", cron_expression="30 2 * * *")
    before = PeriodicTasks.last_change()

    imp = make_import(
        alice, SOURCE, name="second", schedule_type="cron", cron_expression="30 2 * * *"
    )
    services.update_import(imp, name="renamed")
    services.pause_import(imp)

    assert PeriodicTasks.last_change() == before
    entry = PeriodicTask.objects.get(pk=imp.periodic_task_id)
    assert entry.name.startswith("renamed") and entry.enabled is False


def test_another_entry_saved_still_bumps_the_change_row():
    every_hour, _ = IntervalSchedule.objects.get_or_create(every=3600, period="seconds")
    before = PeriodicTasks.last_change()

    PeriodicTask.objects.create(name="cleanup", task="other.cleanup", interval=every_hour)

    assert PeriodicTasks.last_change() != before
