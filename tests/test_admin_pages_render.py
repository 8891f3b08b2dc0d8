"""Every admin page of the schedules app renders (a guard for the admin's configuration)."""

import pytest

from schedules.models import Record
from tests.api_support import SOURCE, make_run
from tests.factories import make_import

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("root", "r@example.com", "x"))
    return client


def test_every_list_add_and_change_page_renders(admin_client, alice):
    imp = make_import(alice, SOURCE)
    run = make_run(imp, "failed", error_message="boom")
    record = Record.objects.create(dataset=imp.dataset, key="A-1", data={}, content_hash=0)
    pages = [
        "/admin/",
        "/admin/schedules/scheduledimport/",
        "/admin/schedules/scheduledimport/add/",
        f"/admin/schedules/scheduledimport/{imp.pk}/change/",
        "/admin/schedules/importrun/",
        "/admin/schedules/importrun/?status__exact=failed",
        f"/admin/schedules/importrun/{run.pk}/change/",
        "/admin/schedules/dataset/",
        f"/admin/schedules/dataset/{imp.dataset_id}/change/",
        "/admin/schedules/record/",
        f"/admin/schedules/record/{record.pk}/change/",
    ]

    for page in pages:
        assert admin_client.get(page).status_code == 200, page


def test_an_import_is_created_in_the_admin_with_its_beat_entry(admin_client, alice):
    dataset = make_import(alice, SOURCE).dataset

    response = admin_client.post(
        "/admin/schedules/scheduledimport/add/",
        {
            "owner": alice.pk, "name": "from the admin", "source_url": SOURCE, "delimiter": ",",
            "encoding": "utf-8", "has_header": "on", "dataset": dataset.pk, "key_column": "sku",
            "columns": "[]", "mode": "upsert", "schedule_type": "cron",
            "cron_expression": "0 3 * * *", "timezone": "UTC", "max_retries": 3,
            "retry_backoff_seconds": 30, "retry_backoff_max_seconds": 600,
            "timeout_seconds": 3600, "overlap": "skip", "catchup": "coalesce",
            "alert_after_failures": 3, "runs-TOTAL_FORMS": 0, "runs-INITIAL_FORMS": 0,
        },
    )  # fmt: skip

    assert response.status_code == 302
    created = alice.imports.get(name="from the admin")
    assert created.periodic_task.enabled and created.periodic_task.crontab.hour == "3"


def test_odd_filters_and_an_absent_imports_audit_log_answer_without_a_server_error(
    admin_client, alice
):
    # Each was a 500: PostgreSQL refused a NUL in the query, a dataset id that is no number
    # raised, and django-auditlog's page raised for an import that is not there
    imp = make_import(alice, SOURCE)
    for page in (
        "/admin/schedules/scheduledimport/?status__exact=%00",
        "/admin/schedules/scheduledimport/?schedule_type__exact=%00",
        "/admin/schedules/importrun/?trigger__exact=%00",
        "/admin/schedules/record/?dataset__id__exact=abc",
    ):
        response = admin_client.get(page)
        assert response.status_code == 302 and response["Location"].endswith("?e=1"), page

    deleted = imp.pk
    imp.delete()
    for object_id in (deleted, 999999, "abc"):
        page = f"/admin/schedules/scheduledimport/{object_id}/auditlog/"
        assert admin_client.get(page).status_code == 302, page


def test_filters_list_their_choices_only_while_they_are_few(
    admin_client, alice, django_user_model, monkeypatch
):
    # Every user and every dataset was listed on each page of the imports' and records' lists
    # (1.5 MB and 1 s at 20,000 datasets); a link with the filter's parameter still filters
    from schedules import admin as schedules_admin

    monkeypatch.setattr(schedules_admin, "FILTER_CHOICES_MAX", 2)
    imp = make_import(alice, SOURCE)
    for name in ("other", "third"):
        make_import(alice, SOURCE, name=name, dataset=name)
    django_user_model.objects.create_user("bob", password="x")

    imports = admin_client.get("/admin/schedules/scheduledimport/").content.decode()
    records = admin_client.get("/admin/schedules/record/").content.decode()
    filtered = admin_client.get(f"/admin/schedules/scheduledimport/?owner__id__exact={alice.pk}")

    assert "By owner" not in imports and "By dataset" not in records
    assert filtered.status_code == 200 and imp.name in filtered.content.decode()


def test_a_list_action_on_a_selection_that_is_no_id_is_refused_in_words(admin_client, alice):
    # A request made by hand raised in the query: a 500
    response = admin_client.post(
        "/admin/schedules/scheduledimport/", {"action": "pause", "_selected_action": ["x"]}
    )

    assert response.status_code == 302
    page = admin_client.get(response["Location"]).content.decode()
    assert "Items are chosen by their ids." in page
