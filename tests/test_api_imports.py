"""`/api/v1/imports/`: list, create, read, update (re-schedules), delete, pause/resume/cancel."""

from datetime import UTC, datetime

import pytest
import time_machine
from django_celery_beat.models import PeriodicTask

from schedules import services
from schedules.models import ImportRun, ScheduledImport
from tests.api_support import API, SOURCE, client_for, import_body, make_run
from tests.factories import make_import

pytestmark = pytest.mark.django_db


def test_it_creates_an_import_and_answers_its_schedule_in_words_and_next_runs(alice):
    # Given alice's client, on a day before the end of summer time in Berlin
    client = client_for(alice)
    with time_machine.travel(datetime(2026, 10, 23, 12, 0, tzinfo=UTC), tick=False):
        # When she creates a cron import at 02:30 Berlin time
        response = client.post(f"{API}/imports/", import_body(), format="json")

    # Then it is created with its schedule, next run and the next 5 ticks, DST-correct
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["owner"] == "alice" and body["status"] == "active"
    assert body["dataset"] == "products"
    assert "02:30" in body["schedule_description"]
    assert "Europe/Berlin" in body["schedule_description"]
    assert body["next_runs"] == [
        "2026-10-24T00:30:00Z",  # CEST, UTC+2
        "2026-10-25T00:30:00Z",  # 02:30 happens twice that night: the first one, CEST
        "2026-10-26T01:30:00Z",  # CET, UTC+1
        "2026-10-27T01:30:00Z",
        "2026-10-28T01:30:00Z",
    ]
    assert body["next_run_at"] == body["next_runs"][0]
    imp = ScheduledImport.objects.get(pk=body["id"])
    assert imp.periodic_task.crontab.timezone.key == "Europe/Berlin"


def test_a_rule_whose_list_holds_a_step_is_created_listed_and_shown_on_the_dashboard(
    alice, admin_client
):
    # cron-descriptor raised on it: the create answered 500 after saving the import, and then
    # the owner's whole import list and the dashboard answered 500 too
    client = client_for(alice)
    response = client.post(
        f"{API}/imports/", import_body(cron_expression="0 8-18/2,23 * * *"), format="json"
    )

    assert response.status_code == 201, response.json()
    assert response.json()["schedule_description"] == (
        "At 08:00, 10:00, 12:00, 14:00, 16:00, 18:00 and 23:00 (Europe/Berlin)"
    )
    assert client.get(f"{API}/imports/").status_code == 200
    assert admin_client.get("/dashboard/").status_code == 200


def test_an_interval_import_is_described_in_words(alice):
    response = client_for(alice).post(
        f"{API}/imports/",
        import_body(schedule_type="interval", interval_seconds=900, cron_expression=""),
        format="json",
    )

    assert response.status_code == 201, response.json()
    assert response.json()["schedule_description"] == "Every 15 minutes"
    assert len(response.json()["next_runs"]) == 5


def test_the_list_is_paginated_and_filters_by_status_dataset_and_search(alice):
    # Given three imports of alice, one paused, in two datasets
    make_import(alice, SOURCE, name="daily prices", dataset="prices")
    paused = make_import(alice, SOURCE, name="stock levels", dataset="stock")
    make_import(alice, SOURCE, name="weekly prices", dataset="prices", description="weekly")
    client = client_for(alice)
    client.post(f"{API}/imports/{paused.pk}/pause")

    # When she lists them, with and without filters
    everything = client.get(f"{API}/imports/").json()
    by_status = client.get(f"{API}/imports/", {"status": "paused"}).json()
    by_dataset = client.get(f"{API}/imports/", {"dataset": "prices"}).json()
    by_search = client.get(f"{API}/imports/", {"search": "WEEKLY"}).json()
    one_per_page = client.get(f"{API}/imports/", {"page_size": 1}).json()

    # Then the shape is count/next/previous/results and each filter narrows the list
    assert set(everything) == {"count", "next", "previous", "results"}
    assert everything["count"] == 3
    assert [i["name"] for i in by_status["results"]] == ["stock levels"]
    assert {i["name"] for i in by_dataset["results"]} == {"daily prices", "weekly prices"}
    assert [i["name"] for i in by_search["results"]] == ["weekly prices"]
    assert one_per_page["count"] == 3 and one_per_page["next"] and not one_per_page["previous"]


def test_a_bad_filter_value_is_a_400_naming_the_filter(alice):
    response = client_for(alice).get(f"{API}/imports/", {"status": "sleeping"})

    assert response.status_code == 400
    assert "status" in response.json()["errors"]


def test_it_reads_one_import(alice):
    imp = make_import(alice, SOURCE)

    response = client_for(alice).get(f"{API}/imports/{imp.pk}/")

    assert response.status_code == 200
    assert response.json()["id"] == imp.pk and response.json()["key_column"] == "sku"


def test_patch_reschedules_the_beat_entry(alice):
    # Given an hourly interval import
    imp = make_import(alice, SOURCE)
    client = client_for(alice)

    # When it is switched to a cron schedule in New York time
    response = client.patch(
        f"{API}/imports/{imp.pk}/",
        {"schedule_type": "cron", "cron_expression": "0 6 * * 1-5", "timezone": "America/New_York"},
        format="json",
    )

    # Then the answer and the beat entry both carry the new schedule
    assert response.status_code == 200, response.json()
    assert "America/New_York" in response.json()["schedule_description"]
    task = PeriodicTask.objects.get(pk=imp.periodic_task_id)
    assert task.interval is None
    assert (task.crontab.minute, task.crontab.hour, task.crontab.day_of_week) == ("0", "6", "1-5")
    assert task.crontab.timezone.key == "America/New_York"


def test_switching_between_cron_and_interval_forgets_the_other_schedule(alice):
    # Given a cron import
    client = client_for(alice)
    imp = client.post(f"{API}/imports/", import_body(), format="json").json()

    # When it is switched to an interval, and then back to cron
    to_interval = client.patch(
        f"{API}/imports/{imp['id']}/",
        {"schedule_type": "interval", "interval_seconds": 900},
        format="json",
    )
    back_to_cron = client.patch(
        f"{API}/imports/{imp['id']}/",
        {"schedule_type": "cron", "cron_expression": "0 6 * * *"},
        format="json",
    )

    # Then each answer carries only the schedule in use
    assert to_interval.status_code == 200, to_interval.json()
    assert to_interval.json()["cron_expression"] == ""
    assert to_interval.json()["interval_seconds"] == 900
    assert back_to_cron.status_code == 200, back_to_cron.json()
    assert back_to_cron.json()["interval_seconds"] is None
    assert back_to_cron.json()["cron_expression"] == "0 6 * * *"


def test_put_replaces_the_import_and_may_move_it_to_another_dataset(alice):
    imp = make_import(alice, SOURCE)

    response = client_for(alice).put(
        f"{API}/imports/{imp.pk}/",
        import_body(name="renamed", dataset="elsewhere", description="moved"),
        format="json",
    )

    assert response.status_code == 200, response.json()
    imp.refresh_from_db()
    assert (imp.name, imp.dataset.name, imp.schedule_type) == ("renamed", "elsewhere", "cron")


def test_delete_removes_the_import_its_beat_entry_and_its_runs(alice):
    imp = make_import(alice, SOURCE)
    make_run(imp)
    task_id = imp.periodic_task_id

    response = client_for(alice).delete(f"{API}/imports/{imp.pk}/")

    assert response.status_code == 204
    assert not ScheduledImport.objects.filter(pk=imp.pk).exists()
    assert not PeriodicTask.objects.filter(pk=task_id).exists()
    assert not ImportRun.objects.filter(scheduled_import_id=imp.pk).exists()


def test_pause_resume_and_cancel_change_the_status_and_the_beat_entry_follows(alice):
    imp = make_import(alice, SOURCE)
    queued = make_run(imp, "queued", trigger="api")
    client = client_for(alice)

    paused = client.post(f"{API}/imports/{imp.pk}/pause")
    assert paused.status_code == 200
    assert paused.json()["status"] == "paused" and paused.json()["next_run_at"] is None
    assert not PeriodicTask.objects.get(pk=imp.periodic_task_id).enabled

    resumed = client.post(f"{API}/imports/{imp.pk}/resume")
    assert resumed.json()["status"] == "active" and resumed.json()["next_run_at"]
    assert PeriodicTask.objects.get(pk=imp.periodic_task_id).enabled

    cancelled = client.post(f"{API}/imports/{imp.pk}/cancel")
    assert cancelled.json()["status"] == "cancelled"
    assert not PeriodicTask.objects.get(pk=imp.periodic_task_id).enabled
    queued.refresh_from_db()
    assert queued.status == "cancelled"


def test_pausing_a_cancelled_import_is_a_409_and_leaves_it_cancelled(alice):
    # It made it paused, its history saying so, while the admin's Pause leaves it as it is
    imp = make_import(alice, SOURCE, status="cancelled")

    response = client_for(alice).post(f"{API}/imports/{imp.pk}/pause")

    assert response.status_code == 409
    assert response.json()["detail"] == (
        "the import is cancelled: resume it to schedule it again (only an active import can be "
        "paused)"
    )
    assert ScheduledImport.objects.get(pk=imp.pk).status == "cancelled"
    # ... and pausing a paused one again is no error
    services.pause_import(make_import(alice, SOURCE, name="again", status="paused"))


def test_a_duplicate_name_is_a_400_on_the_name(alice):
    make_import(alice, SOURCE, name="products")

    response = client_for(alice).post(f"{API}/imports/", import_body(), format="json")

    assert response.status_code == 400
    assert "name" in response.json()["errors"]


def test_a_tab_delimited_import_is_saved_and_put_back_as_it_was_read(alice):
    # A TSV file: the check before save suggests "\t"; DRF's trimming made it blank
    client = client_for(alice)

    created = client.post(f"{API}/imports/", import_body(delimiter="\t"), format="json")
    assert created.status_code == 201, created.json()
    shown = client.get(f"{API}/imports/{created.json()['id']}/").json()
    put = client.put(f"{API}/imports/{shown['id']}/", shown, format="json")

    assert shown["delimiter"] == "\t"
    assert put.status_code == 200, put.json()
    assert ScheduledImport.objects.get(pk=shown["id"]).delimiter == "\t"


def test_an_edit_sent_with_an_older_version_in_if_match_is_a_412(alice):
    # A PUT built from an older read undid another client's change, answered 200
    client = client_for(alice)
    imp = client.post(f"{API}/imports/", import_body(), format="json").json()
    read = client.get(f"{API}/imports/{imp['id']}/")
    version, body = read["ETag"], read.json()
    moved = client.patch(
        f"{API}/imports/{imp['id']}/", {"cron_expression": "0 5 * * *"}, format="json"
    )
    assert moved.status_code == 200 and moved["ETag"] != version

    stale = client.put(
        f"{API}/imports/{imp['id']}/", {**body, "description": "mine"}, format="json",
        HTTP_IF_MATCH=version,
    )  # fmt: skip

    assert stale.status_code == 412
    assert stale.json()["detail"].startswith("the import changed since the version you sent")
    assert ScheduledImport.objects.get(pk=imp["id"]).cron_expression == "0 5 * * *"
    # ... and sent with the version it has, it is taken
    fresh = client.put(
        f"{API}/imports/{imp['id']}/",
        {**body, "cron_expression": "0 5 * * *", "description": "mine"},
        format="json",
        HTTP_IF_MATCH=moved["ETag"],
    )
    assert fresh.status_code == 200, fresh.json()
    assert ScheduledImport.objects.get(pk=imp["id"]).description == "mine"


@pytest.mark.parametrize("change", ["delete", "pause", "cancel", "resume"])
def test_a_delete_or_status_change_sent_with_an_older_version_is_a_412(alice, change):
    # Only PUT and PATCH asked: a DELETE with an older If-Match deleted an import another
    # client had changed since (204), and a pause so sent paused it (200).
    client = client_for(alice)
    imp = client.post(f"{API}/imports/", import_body(), format="json").json()
    url = f"{API}/imports/{imp['id']}/"
    version = client.get(url)["ETag"]
    if change == "resume":
        version = client.post(f"{url}pause")["ETag"]
    moved = client.patch(url, {"description": "theirs"}, format="json")
    send = client.delete if change == "delete" else client.post
    target = url if change == "delete" else f"{url}{change}"

    stale = send(target, HTTP_IF_MATCH=version)

    assert stale.status_code == 412, stale.content
    assert stale.json()["detail"].startswith("the import changed since the version you sent")
    kept = ScheduledImport.objects.get(pk=imp["id"])
    assert kept.status == ("paused" if change == "resume" else "active")
    # Sent with the version it has, it is done; a status change answers with the new version.
    done = send(target, HTTP_IF_MATCH=moved["ETag"])
    assert done.status_code == (204 if change == "delete" else 200), done.content
    if change != "delete":
        assert done["ETag"] == services.import_version(ScheduledImport.objects.get(pk=imp["id"]))


def test_a_weak_tag_in_if_match_never_matches(alice):
    # If-Match compares strongly (RFC 9110 13.1.1): W/"v" was taken for "v".
    client = client_for(alice)
    imp = client.post(f"{API}/imports/", import_body(), format="json").json()
    url = f"{API}/imports/{imp['id']}/"
    version = client.get(url)["ETag"]

    weak = client.patch(url, {"description": "x"}, format="json", HTTP_IF_MATCH=f"W/{version}")

    assert weak.status_code == 412
