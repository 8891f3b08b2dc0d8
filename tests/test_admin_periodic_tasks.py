"""django-celery-beat's Periodic tasks admin: importbeat's own entries are named after their
import and read-only there (an edit behind the import's back would be undone by its next save);
other entries stay editable."""

import pytest
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from schedules import services
from tests.api_support import SOURCE
from tests.factories import make_import

pytestmark = pytest.mark.django_db

TASKS = "/admin/django_celery_beat/periodictask/"


def test_an_imports_entry_is_named_after_it_and_follows_a_rename(alice):
    imp = make_import(alice, SOURCE)
    assert imp.periodic_task.name == f"products (alice) · import #{imp.pk}"

    services.update_import(imp, name="prices")

    assert PeriodicTask.objects.get(pk=imp.periodic_task_id).name == (
        f"prices (alice) · import #{imp.pk}"
    )


def test_a_very_long_import_name_still_fits_with_its_id(alice):
    imp = make_import(alice, SOURCE, name="x" * 200)

    name = imp.periodic_task.name
    assert len(name) == 200 and name.endswith(f" (alice) · import #{imp.pk}")


def test_an_imports_entry_is_read_only_and_links_to_the_import(admin_client, alice):
    imp = make_import(alice, SOURCE)
    task = imp.periodic_task

    listed = admin_client.get(TASKS).content.decode()
    page = admin_client.get(f"{TASKS}{task.pk}/change/")
    posted = admin_client.post(f"{TASKS}{task.pk}/change/", {"name": "hijacked", "enabled": ""})
    deleted = admin_client.post(f"{TASKS}{task.pk}/delete/", {"post": "yes"})

    assert f'href="/admin/schedules/scheduledimport/{imp.pk}/change/"' in listed
    assert page.status_code == 200 and 'name="_save"' not in page.content.decode()
    assert posted.status_code == 403 and deleted.status_code == 403
    task.refresh_from_db()
    assert task.enabled and task.name.startswith("products")


def test_bulk_actions_leave_importbeats_entries_alone(admin_client, alice):
    imp = make_import(alice, SOURCE)
    every_hour, _ = IntervalSchedule.objects.get_or_create(every=1, period="hours")
    other = PeriodicTask.objects.create(
        name="someone else's", task="other.job", interval=every_hour
    )

    response = admin_client.post(
        TASKS,
        {"action": "disable_tasks", "_selected_action": [imp.periodic_task_id, other.pk]},
        follow=True,
    )

    assert PeriodicTask.objects.get(pk=imp.periodic_task_id).enabled
    assert not PeriodicTask.objects.get(pk=other.pk).enabled
    assert "Entries of importbeat were left alone" in response.content.decode()
    assert admin_client.get(f"{TASKS}{other.pk}/change/").content.decode().count('name="_save"')


def test_a_schedule_row_an_import_uses_is_read_only(admin_client, alice):
    # An import every minute shares its interval row with the maintenance jobs: edited to a
    # day here, it moved the sweep and reconciliation to once a day, and the imports' listed
    # schedule with them
    imp = make_import(alice, SOURCE, interval_seconds=60)
    row = imp.periodic_task.interval
    unused, _ = IntervalSchedule.objects.get_or_create(every=7, period="hours")
    url = f"/admin/django_celery_beat/intervalschedule/{row.pk}/change/"

    page = admin_client.get(url)
    posted = admin_client.post(url, {"every": 1, "period": "days"})
    deleted = admin_client.post(
        f"/admin/django_celery_beat/intervalschedule/{row.pk}/delete/", {"post": "yes"}
    )

    assert page.status_code == 200 and 'name="_save"' not in page.content.decode()
    assert posted.status_code == 403 and deleted.status_code == 403
    row.refresh_from_db()
    assert (row.every, row.period) == (60, "seconds")
    # ... while a row no entry of importbeat uses is the operator's
    other = admin_client.get(f"/admin/django_celery_beat/intervalschedule/{unused.pk}/change/")
    assert 'name="_save"' in other.content.decode()


def test_an_entry_an_operator_added_for_an_importbeat_task_is_theirs_to_edit(admin_client):
    # It was judged by its task's name: read-only, undeletable, and run by beat
    every_minute, _ = IntervalSchedule.objects.get_or_create(every=10, period="seconds")
    added = PeriodicTask.objects.create(
        name="extra retention", task="importbeat.delete_old_runs", interval=every_minute
    )

    deleted = admin_client.post(f"{TASKS}{added.pk}/delete/", {"post": "yes"})

    assert deleted.status_code == 302
    assert not PeriodicTask.objects.filter(pk=added.pk).exists()
