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
