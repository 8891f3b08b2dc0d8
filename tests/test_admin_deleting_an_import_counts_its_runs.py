"""The admin's confirmation of an import's deletion counts its runs instead of listing them.

Django's page listed every run as a link, each read as an instance: 5 MB and 10 s for a month of
minute runs, killed after 30 s for a year of them (schedules/admin_deletion.py).
"""

import re

import pytest
from django.contrib.auth.models import Permission

from schedules.models import ImportRun, NotificationDelivery, ScheduledImport
from tests.api_support import SOURCE, make_run
from tests.factories import make_import

pytestmark = pytest.mark.django_db  # admin_client: pytest-django's, a superuser signed in

CHANGELIST = "/admin/schedules/scheduledimport/"


def with_history(owner, name: str = "products", runs: int = 300) -> ScheduledImport:
    imp = make_import(owner, SOURCE, name=name, dataset=name)
    ImportRun.objects.bulk_create(
        ImportRun(scheduled_import=imp, trigger="schedule", status="succeeded") for _ in range(runs)
    )
    NotificationDelivery.objects.create(
        scheduled_import=imp, run=make_run(imp, "failed"), event="failed", channel="email"
    )
    return imp


def test_the_confirmation_counts_the_runs_and_deleting_deletes_them(admin_client, alice):
    imp = with_history(alice)

    page = admin_client.get(f"{CHANGELIST}{imp.pk}/delete/").content.decode()

    assert f'<a href="{CHANGELIST}{imp.pk}/change/">products</a>' in page
    assert "301 import runs" in page and "1 notification delivery" in page
    assert not re.search(r"/admin/schedules/importrun/\d+/", page)  # no run listed one by one
    answer = admin_client.post(f"{CHANGELIST}{imp.pk}/delete/", {"post": "yes"})
    assert answer.status_code == 302
    assert not ScheduledImport.objects.filter(pk=imp.pk).exists()
    assert not ImportRun.objects.filter(scheduled_import_id=imp.pk).exists()


def test_the_bulk_action_counts_them_for_every_import_chosen(admin_client, alice):
    first, second = with_history(alice), with_history(alice, "prices", runs=10)
    chosen = {"action": "delete_selected", "_selected_action": [first.pk, second.pk]}

    page = admin_client.post(CHANGELIST, chosen).content.decode()

    assert "301 import runs" in page and "11 import runs" in page
    assert "Scheduled imports: 2" in page and "Import runs: 312" in page
    admin_client.post(CHANGELIST, {**chosen, "post": "yes"})
    assert not ScheduledImport.objects.filter(pk__in=[first.pk, second.pk]).exists()


def test_a_staff_member_who_may_not_delete_runs_is_told_so(client, django_user_model, alice):
    imp = with_history(alice, runs=3)
    staff = django_user_model.objects.create_user("sam", password="x", is_staff=True)
    staff.user_permissions.add(
        *Permission.objects.filter(
            codename__in=["view_scheduledimport", "delete_scheduledimport", "view_importrun"]
        )
    )
    client.force_login(staff)

    page = client.get(f"{CHANGELIST}{imp.pk}/delete/").content.decode()

    assert "Cannot delete scheduled import" in page and "<li>import run</li>" in page
    client.post(f"{CHANGELIST}{imp.pk}/delete/", {"post": "yes"})
    assert ScheduledImport.objects.filter(pk=imp.pk).exists()
