"""The admin's confirmation of a deletion counts what goes along instead of listing it.

Django's page listed every run of an import as a link, each read as an instance: 5 MB and 10 s
for a month of minute runs, killed after 30 s for a year of them; a dataset's page read its
records (schedules/admin_deletion.py).
"""

import re

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext

from schedules.models import Dataset, ImportRun, NotificationDelivery, Record, ScheduledImport
from tests.api_support import SOURCE, make_run
from tests.factories import make_import, make_records

pytestmark = pytest.mark.django_db  # admin_client: pytest-django's, a superuser signed in

CHANGELIST = "/admin/schedules/scheduledimport/"
DATASETS = "/admin/schedules/dataset/"
RUNS = "/admin/schedules/importrun/"


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


def test_a_datasets_records_are_counted_and_go_with_it(admin_client, alice):
    dataset = Dataset.objects.create(owner=alice, name="old")
    make_records(
        dataset, [Record(dataset=dataset, key=f"k{n}", data={}, content_hash=n) for n in range(3)]
    )

    page = admin_client.get(f"{DATASETS}{dataset.pk}/delete/").content.decode()

    assert "3 records" in page and not re.search(r"/admin/schedules/record/\d+/", page)
    admin_client.post(f"{DATASETS}{dataset.pk}/delete/", {"post": "yes"})
    assert not Dataset.objects.filter(pk=dataset.pk).exists()
    assert not Record.objects.filter(dataset_id=dataset.pk).exists()


def test_a_dataset_an_import_writes_to_cannot_be_deleted(admin_client, alice):
    imp = make_import(alice, SOURCE)

    page = admin_client.get(f"{DATASETS}{imp.dataset_id}/delete/").content.decode()

    assert "Cannot delete dataset" in page
    assert f'<a href="{CHANGELIST}{imp.pk}/change/">products</a>' in page
    admin_client.post(f"{DATASETS}{imp.dataset_id}/delete/", {"post": "yes"})
    assert Dataset.objects.filter(pk=imp.dataset_id).exists()


def test_runs_chosen_across_the_pages_go_in_a_few_statements(admin_client, alice):
    imp = make_import(alice, SOURCE)
    failed = make_run(imp, "failed")
    delivery = NotificationDelivery.objects.create(
        scheduled_import=imp, run=failed, event="failed", channel="email"
    )
    others = ImportRun.objects.bulk_create(
        ImportRun(scheduled_import=imp, trigger="schedule", status="succeeded") for _ in range(150)
    )
    retry = make_run(imp, "succeeded", retry_of=failed)
    # Every failed run, chosen across the pages of the list
    chosen = {
        "action": "delete_selected",
        "select_across": "1",
        "_selected_action": [failed.pk],
    }
    failed_runs = f"{RUNS}?status__exact=failed"

    page = admin_client.post(failed_runs, chosen).content.decode()
    with CaptureQueriesContext(connection) as statements:
        admin_client.post(failed_runs, {**chosen, "post": "yes"})

    assert "<li>Import runs: 1</li>" in page
    assert not ImportRun.objects.filter(pk=failed.pk).exists()
    assert ImportRun.objects.filter(scheduled_import=imp).count() == len(others) + 1
    retry.refresh_from_db()
    delivery.refresh_from_db()
    assert retry.retry_of_id is None and delivery.run_id is None
    assert len(statements) < 30


def confirmation_form(page: str) -> dict[str, list[str]]:
    """The hidden fields of the confirmation's form, as a browser would post them back."""
    form: dict[str, list[str]] = {}
    for name, value in re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page):
        form.setdefault(name, []).append(value)
    return form


def test_a_selection_across_the_pages_is_confirmed_as_that_choice(admin_client, alice):
    # More runs than Django lets a form post fields (DATA_UPLOAD_MAX_NUMBER_FIELDS, 1,000)
    imp = make_import(alice, SOURCE)
    ImportRun.objects.bulk_create(
        ImportRun(scheduled_import=imp, trigger="schedule", status="failed") for _ in range(1_200)
    )
    kept = make_run(imp, "succeeded")
    failed_runs = f"{RUNS}?status__exact=failed"
    first = ImportRun.objects.filter(status="failed").first()
    chosen = {"action": "delete_selected", "select_across": "1", "_selected_action": [first.pk]}

    page = admin_client.post(failed_runs, chosen).content.decode()
    form = confirmation_form(page)
    answer = admin_client.post(failed_runs, form)

    # Django's form posted the 1,200 ids back, and refused them (400)
    assert answer.status_code == 302
    assert "<li>Import runs: 1,200</li>" in page or "<li>Import runs: 1200</li>" in page
    assert form.get("select_across") == ["1"] and len(form["_selected_action"]) == 1
    assert list(ImportRun.objects.filter(scheduled_import=imp)) == [kept]
