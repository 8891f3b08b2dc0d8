"""The Django admin: the imports list, its actions through services, reschedule on edit, and
the run detail with its errors."""

from html import unescape

import pytest
from django_celery_beat.models import PeriodicTask

from schedules.models import ImportRun, ScheduledImport
from tests.api_support import SOURCE, make_run
from tests.factories import make_import

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/schedules/scheduledimport/"


@pytest.fixture
def admin_client(client, django_user_model):
    admin = django_user_model.objects.create_superuser("root", "root@example.com", "x")
    client.force_login(admin)
    return client


def test_the_list_shows_owner_schedule_status_last_result_next_run_and_success_rate(
    admin_client, alice
):
    imp = make_import(alice, SOURCE, interval_seconds=900)
    ScheduledImport.objects.filter(pk=imp.pk).update(
        successful_runs=3, failed_runs=1, last_run_status="failed", last_run_at=imp.created_at
    )

    html = admin_client.get(CHANGELIST).content.decode()

    for text in ("products", "alice", "Every 15 minutes", "active", 'ib-bad">failed<', "75%"):
        assert text in html, text


def test_the_list_filters_and_searches(admin_client, alice, bob):
    make_import(alice, SOURCE, name="alpha feed")
    paused = make_import(bob, SOURCE, name="beta feed")
    paused.status = "paused"
    paused.save()

    searched = admin_client.get(CHANGELIST, {"q": "bob"}).content.decode()
    filtered = admin_client.get(CHANGELIST, {"status__exact": "paused"}).content.decode()

    assert "beta feed" in searched and "alpha feed" not in searched
    assert "beta feed" in filtered and "alpha feed" not in filtered


def act(client, action: str, *imports):
    return client.post(
        CHANGELIST, {"action": action, "_selected_action": [i.pk for i in imports]}, follow=True
    )


def test_run_now_queues_a_manual_run_and_says_when_one_is_already_active(admin_client, alice):
    idle = make_import(alice, SOURCE, name="idle")
    busy = make_import(alice, SOURCE, name="busy", dataset="busy")
    make_run(busy, "running")

    response = act(admin_client, "run_now", idle, busy)

    run = idle.runs.get()
    assert (run.status, run.trigger, run.triggered_by.username) == ("queued", "manual", "root")
    assert busy.runs.count() == 1
    text = response.content.decode()
    assert "Queued 1 run" in text and "Already running: busy" in text


def test_run_now_names_an_import_whose_owner_is_deactivated_and_queues_the_others(
    admin_client, alice, bob
):
    # It answered 500, though the rest of the selection was queued
    bobs = make_import(bob, SOURCE, name="bob's")
    alices = make_import(alice, SOURCE, name="alice's")
    alice.is_active = False
    alice.save()

    response = act(admin_client, "run_now", bobs, alices)

    assert response.status_code == 200
    assert bobs.runs.get().status == "queued" and not alices.runs.exists()
    text = response.content.decode()
    assert "Queued 1 run" in text
    # (the admin's message starts with a capital)
    assert "alice's: not queued, its owner's account is deactivated" in unescape(text).lower()


def test_pause_and_resume_actions_disable_and_enable_the_beat_entry(admin_client, alice):
    imp = make_import(alice, SOURCE)

    act(admin_client, "pause", imp)
    assert not PeriodicTask.objects.get(pk=imp.periodic_task_id).enabled
    assert ScheduledImport.objects.get(pk=imp.pk).status == "paused"

    act(admin_client, "resume", imp)
    assert PeriodicTask.objects.get(pk=imp.periodic_task_id).enabled
    assert ScheduledImport.objects.get(pk=imp.pk).status == "active"


def test_an_action_names_the_imports_it_does_not_apply_to_and_leaves_them(admin_client, alice):
    # "Paused 3 import(s)" was said of two, and pausing a cancelled import made it paused
    active = make_import(alice, SOURCE, name="active")
    paused = make_import(alice, SOURCE, name="paused", status="paused")
    cancelled = make_import(alice, SOURCE, name="cancelled", status="cancelled")

    text = act(admin_client, "pause", active, paused, cancelled).content.decode()

    assert "Paused 1 import(s)." in text
    assert "Left as they were: paused (paused), cancelled (cancelled)" in text
    statuses = dict(ScheduledImport.objects.values_list("name", "status"))
    assert statuses == {"active": "paused", "paused": "paused", "cancelled": "cancelled"}


def form_data(imp: ScheduledImport, **changes) -> dict:
    data = {
        "owner": imp.owner_id, "name": imp.name, "description": imp.description,
        "source_url": imp.source_url, "delimiter": imp.delimiter, "encoding": imp.encoding,
        "has_header": "on", "dataset": imp.dataset_id, "key_column": imp.key_column,
        "columns": "[]", "mode": imp.mode, "schedule_type": imp.schedule_type,
        "cron_expression": imp.cron_expression, "interval_seconds": imp.interval_seconds or "",
        "timezone": imp.timezone, "max_retries": 3, "retry_backoff_seconds": 30,
        "retry_backoff_max_seconds": 600, "timeout_seconds": 3600, "overlap": "skip",
        "catchup": "coalesce", "alert_after_failures": 3, "callback_url": "",
        "runs-TOTAL_FORMS": 0, "runs-INITIAL_FORMS": 0, "runs-MIN_NUM_FORMS": 0,
        "runs-MAX_NUM_FORMS": 0,
    }  # fmt: skip
    data.update(changes)
    return data


def test_editing_the_schedule_in_the_admin_reschedules_the_beat_entry(admin_client, alice):
    imp = make_import(alice, SOURCE)

    response = admin_client.post(
        f"{CHANGELIST}{imp.pk}/change/",
        form_data(imp, schedule_type="cron", cron_expression="15 4 * * *",
                  interval_seconds="", timezone="Asia/Tokyo"),
    )  # fmt: skip

    assert response.status_code == 302, response.context["adminform"].form.errors
    task = PeriodicTask.objects.get(pk=imp.periodic_task_id)
    assert task.interval is None
    assert (task.crontab.minute, task.crontab.hour, str(task.crontab.timezone)) == (
        "15", "4", "Asia/Tokyo",
    )  # fmt: skip
    assert ScheduledImport.objects.get(pk=imp.pk).next_run_at.minute == 15


def test_a_broken_schedule_in_the_admin_is_refused_on_its_field(admin_client, alice):
    # (regression: the page showing the errors once crashed describing the broken schedule)
    imp = make_import(alice, SOURCE)

    response = admin_client.post(
        f"{CHANGELIST}{imp.pk}/change/",
        form_data(imp, schedule_type="cron", cron_expression="61 * * * *", timezone="Nowhere/X"),
    )

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert "cron_expression" in errors and "timezone" in errors
    assert PeriodicTask.objects.get(pk=imp.periodic_task_id).interval is not None


def test_the_import_page_shows_recent_runs_inline(admin_client, alice):
    imp = make_import(alice, SOURCE)
    runs = [make_run(imp, "succeeded") for _ in range(12)]

    html = admin_client.get(f"{CHANGELIST}{imp.pk}/change/").content.decode()

    assert f"#{runs[-1].pk}" in html and f"#{runs[2].pk}" in html
    assert f"#{runs[1].pk}<" not in html  # only the last 10


def test_a_run_page_shows_its_errors(admin_client, alice):
    imp = make_import(alice, SOURCE)
    run = make_run(
        imp, "partial", error_message="1 rows failed",
        error_details={
            "rows": [{"line": 7, "column": "price", "value": "ten", "reason": "not a decimal"}],
            "attempts": [{"attempt": 1, "error": "connection reset", "at": "2026-11-01"}],
        },
    )  # fmt: skip

    response = admin_client.get(f"/admin/schedules/importrun/{run.pk}/change/")

    assert response.status_code == 200
    html = response.content.decode()
    for text in ("1 rows failed", "<td>7</td>", "not a decimal", "connection reset"):
        assert text in html, text
    assert ImportRun.objects.get(pk=run.pk).status == "partial"


def test_a_dataset_of_another_user_is_refused_and_datasets_are_labelled_by_owner(
    admin_client, alice, bob
):
    imp = make_import(alice, SOURCE)
    bobs = make_import(bob, SOURCE, name="bobs", dataset="bob-data")

    page = admin_client.get(f"{CHANGELIST}{imp.pk}/change/").content.decode()
    response = admin_client.post(
        f"{CHANGELIST}{imp.pk}/change/", form_data(imp, dataset=bobs.dataset_id)
    )

    # (the others are found by a search: tests/test_admin_import_page_names_datasets_by_search.py)
    assert "alice / products" in page
    assert "dataset" in response.context["adminform"].form.errors


def test_a_cron_expression_typed_into_an_interval_import_is_refused_not_dropped(
    admin_client, alice
):
    # Given an hourly import (interval)
    imp = make_import(alice, SOURCE)

    # When an operator types a cron expression but leaves the schedule type as it was
    response = admin_client.post(
        f"{CHANGELIST}{imp.pk}/change/", form_data(imp, cron_expression="15 4 * * *")
    )

    # Then the form says so on that field (it was saved, and the expression dropped)
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["cron_expression"] == [
        "only for the cron schedule type: choose it as the schedule type to switch, "
        "or leave this field as it was"
    ]
    assert ScheduledImport.objects.get(pk=imp.pk).cron_expression == ""


def test_switching_the_type_in_the_admin_clears_the_other_field_left_as_it_was(admin_client, alice):
    imp = make_import(alice, SOURCE)  # interval 3600

    response = admin_client.post(
        f"{CHANGELIST}{imp.pk}/change/",
        form_data(imp, schedule_type="cron", cron_expression="15 4 * * *"),
    )

    assert response.status_code == 302, response.context["adminform"].form.errors
    saved = ScheduledImport.objects.get(pk=imp.pk)
    assert (saved.schedule_type, saved.interval_seconds) == ("cron", None)


def test_a_webhook_without_a_callback_is_refused_in_the_admin(admin_client, alice):
    imp = make_import(alice, SOURCE)

    response = admin_client.post(
        f"{CHANGELIST}{imp.pk}/change/",
        form_data(imp, notify_on='["failed"]', notify_channels='["webhook"]'),
    )

    assert response.status_code == 200
    assert response.context["adminform"].form.errors["notify_channels"] == [
        "a webhook is sent to the import's callback_url, and it has none: set one, or add email"
    ]
    assert ScheduledImport.objects.get(pk=imp.pk).notify_on == []


def test_a_tab_delimiter_is_typed_as_backslash_t_and_shown_so(admin_client, alice):
    imp = make_import(alice, SOURCE)

    response = admin_client.post(f"{CHANGELIST}{imp.pk}/change/", form_data(imp, delimiter="\\t"))

    assert response.status_code == 302, response.context["adminform"].form.errors
    assert ScheduledImport.objects.get(pk=imp.pk).delimiter == "\t"
    page = admin_client.get(f"{CHANGELIST}{imp.pk}/change/").content.decode()
    assert 'name="delimiter" value="\\t"' in page


def test_json_nested_too_deep_is_an_error_on_its_field(admin_client, alice):
    # The json module's RecursionError was a 500 (the API refuses it as a 400)
    imp = make_import(alice, SOURCE)

    response = admin_client.post(
        f"{CHANGELIST}{imp.pk}/change/", form_data(imp, columns="[" * 5000)
    )

    assert response.status_code == 200
    assert response.context["adminform"].form.errors["columns"] == [
        "this JSON nests deeper than any import's settings (a list of objects)"
    ]


def test_a_page_opened_before_another_change_saves_nothing_and_says_so(admin_client, alice):
    # Django reads what the form changed against the import as it is at the save: the owner's
    # description, edited through the API since the page opened, was written back as the
    # page had it, and the admin said "changed successfully" (review).
    import re

    from tests.api_support import API, client_for

    imp = make_import(alice, SOURCE, description="first")
    page = admin_client.get(f"{CHANGELIST}{imp.pk}/change/").content.decode()
    shown = re.search(r'name="version" value="([^"]*)"', page).group(1)
    owner = client_for(alice)
    assert owner.patch(f"{API}/imports/{imp.pk}/", {"description": "the owner's"},
                       format="json").status_code == 200  # fmt: skip

    stale = admin_client.post(
        f"{CHANGELIST}{imp.pk}/change/",
        form_data(imp, description="first", timeout_seconds=1800, version=unescape(shown)),
    )

    assert stale.status_code == 200
    assert "This import was changed since you opened this page" in stale.content.decode()
    imp.refresh_from_db()
    assert (imp.description, imp.timeout_seconds) == ("the owner's", 3600)
    # The page opened again saves
    page = admin_client.get(f"{CHANGELIST}{imp.pk}/change/").content.decode()
    shown = re.search(r'name="version" value="([^"]*)"', page).group(1)
    imp.refresh_from_db()
    fresh = admin_client.post(
        f"{CHANGELIST}{imp.pk}/change/",
        form_data(imp, timeout_seconds=1800, version=unescape(shown)),
    )
    assert fresh.status_code == 302, fresh.context["adminform"].form.errors
    imp.refresh_from_db()
    assert (imp.description, imp.timeout_seconds) == ("the owner's", 1800)
