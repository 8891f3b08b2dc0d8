"""Who changed an import, when and what (old -> new), from the API, the admin or a command;
`GET /imports/{id}/history/` and the admin show it. A password in a URL is never recorded."""

import pytest
from auditlog.models import LogEntry
from django.core.management import call_command

from schedules import history
from schedules.admin import ScheduledImportAdmin
from schedules.api.serializers import ImportSerializer
from schedules.models import ScheduledImport
from tests.api_support import API, SOURCE, client_for, import_body, make_run, reset_throttle
from tests.factories import make_import

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_manual_run_budget(alice):
    reset_throttle("manual_run", alice.pk)


def entries(client, imp_id: int) -> list[dict]:
    response = client.get(f"{API}/imports/{imp_id}/history/")
    assert response.status_code == 200, response.content
    return response.json()["results"]


def test_every_change_through_the_api_is_recorded_with_who_and_old_and_new(alice):
    # Given alice's import, created through the API
    client = client_for(alice)
    imp = client.post(f"{API}/imports/", import_body(), format="json").json()

    # When she edits its schedule and its dataset, pauses, resumes, triggers and cancels it
    client.patch(f"{API}/imports/{imp['id']}/", {"cron_expression": "0 6 * * *",
                 "dataset": "elsewhere"}, format="json")  # fmt: skip
    client.post(f"{API}/imports/{imp['id']}/pause")
    client.post(f"{API}/imports/{imp['id']}/resume")
    run = client.post(f"{API}/imports/{imp['id']}/run").json()
    client.post(f"{API}/runs/{run['id']}/cancel")
    client.post(f"{API}/imports/{imp['id']}/cancel")

    # Then the history tells it all, newest first, each by alice through the API
    story = entries(client, imp["id"])
    assert [e["action"] for e in story] == [
        "cancelled", "run cancelled", "run triggered", "resumed", "paused", "updated", "created",
    ]  # fmt: skip
    assert {(e["by"], e["via"]) for e in story} == {("alice", "api")}
    assert story[1]["run"] == story[2]["run"] == run["id"]
    assert story[5]["changes"] == {
        "cron_expression": {"from": "30 2 * * *", "to": "0 6 * * *"},
        "dataset": {"from": "products", "to": "elsewhere"},
    }
    assert story[4]["changes"] == {"status": {"from": "active", "to": "paused"}}
    assert story[6]["changes"]["name"] == {"from": None, "to": "products"}


def test_counters_and_ticks_written_by_the_system_are_not_changes(alice):
    imp = make_import(alice, SOURCE)
    make_run(imp, "failed")
    ScheduledImport.objects.filter(pk=imp.pk).update(consecutive_failures=1, total_runs=1)
    imp.refresh_from_db()
    imp.save()

    assert [e["action"] for e in entries(client_for(alice), imp.pk)] == ["created"]


def test_a_password_in_a_url_is_never_recorded(alice):
    # An import saved before a password in a URL was refused (schedules.validation), whose
    # owner's edit is saved without passing the API's checks (a shell, a script)
    client = client_for(alice)
    imp = client.post(f"{API}/imports/", import_body(), format="json").json()
    legacy = ScheduledImport.objects.get(pk=imp["id"])
    legacy.source_url = "https://reader:s3cret@example.com/p.csv"
    legacy.save()
    legacy.source_url = "https://reader:n3w@example.com/p.csv"
    legacy.save()

    story = entries(client, imp["id"])

    assert story[0]["changes"]["source_url"] == {
        "from": "https://reader:***@example.com/p.csv",
        "to": "https://reader:***@example.com/p.csv",
    }
    assert story[1]["changes"]["source_url"]["to"] == "https://reader:***@example.com/p.csv"
    stored = " ".join(str(e.changes) + str(e.serialized_data) for e in LogEntry.objects.all())
    assert "s3cret" not in stored and "n3w" not in stored


def test_changes_in_the_admin_are_recorded_as_the_admins_and_shown_there(
    client, django_user_model, alice
):
    # Given an admin, and alice's import
    root = django_user_model.objects.create_superuser("root", "root@example.com", "pw")
    client.force_login(root)
    imp = make_import(alice, SOURCE)

    # When the admin pauses it with the action
    client.post("/admin/schedules/scheduledimport/",
                {"action": "pause", "_selected_action": [imp.pk]})  # fmt: skip

    # Then the history names root and the admin, and the admin's audit log page shows it
    latest = entries(client_for(alice), imp.pk)[0]
    assert (latest["action"], latest["by"], latest["via"]) == ("paused", "root", "admin")
    page = client.get(f"/admin/schedules/scheduledimport/{imp.pk}/auditlog/")
    assert page.status_code == 200 and "root" in page.content.decode()


def test_a_command_is_recorded_as_a_command(alice, csv_server, monkeypatch):
    imp = make_import(alice, csv_server.serve("/p.csv", "sku\nA-1\n"))
    monkeypatch.setattr(history, "via", history.ContextVar("via", default="command"))

    call_command("run_import", imp.pk, "--no-progress")

    latest = entries(client_for(alice), imp.pk)[0]
    assert (latest["action"], latest["by"], latest["via"]) == ("run triggered", None, "command")


def test_deleting_an_import_is_recorded(alice):
    imp = make_import(alice, SOURCE)

    assert client_for(alice).delete(f"{API}/imports/{imp.pk}/").status_code == 204

    deleted = LogEntry.objects.get(object_id=imp.pk, action=LogEntry.Action.DELETE)
    assert deleted.actor == alice
    assert deleted.additional_data["via"] == "api"


def test_a_change_of_which_file_of_a_zip_is_imported_is_recorded(alice):
    # Bug 6 of the API hunt: the PATCH answered 200 with the new member, and the history held
    # only `created`
    client = client_for(alice)
    body = import_body(source_url="https://example.com/bundle.zip", source_member="a.csv")
    imp = client.post(f"{API}/imports/", body, format="json").json()

    client.patch(f"{API}/imports/{imp['id']}/", {"source_member": "b.csv"}, format="json")

    story = entries(client, imp["id"])
    assert [e["action"] for e in story] == ["updated", "created"]
    assert story[0]["changes"] == {"source_member": {"from": "a.csv", "to": "b.csv"}}
    assert story[1]["changes"]["source_member"] == {"from": None, "to": "a.csv"}


def test_every_field_the_api_or_the_admin_writes_is_tracked():
    # Bug 6 of the API hunt: `source_member` and `move_processed` were left out, so their
    # changes were in no history
    serializer = ImportSerializer()
    api = {name for name, field in serializer.fields.items() if not field.read_only}
    # The credential's secret is never recorded: its kind and host are
    api = (api - {"credential"}) | {"credential_kind", "credential_origin"}
    on_the_admins_form = {
        name
        for _, section in ScheduledImportAdmin.fieldsets
        for name in section["fields"]
        if name not in ScheduledImportAdmin.readonly_fields
    }
    model_fields = {field.name for field in ScheduledImport._meta.get_fields()}
    # (not the owner: its new owner would read the former one's name)
    admin = on_the_admins_form & model_fields - {"owner"}

    assert (api | admin) - set(history.TRACKED_FIELDS) == set()


def test_asking_a_running_run_to_stop_twice_records_it_once(alice):
    # Each ask answered 200 and added a "run cancelled" to the history of the one run
    imp = make_import(alice, SOURCE)
    run = make_run(imp, "running")
    client = client_for(alice)

    answers = [client.post(f"{API}/runs/{run.pk}/cancel").status_code for _ in range(2)]

    assert answers == [200, 200]
    story = entries(client, imp.pk)
    assert [e["action"] for e in story].count("run cancelled") == 1


def test_a_credential_swapped_for_another_of_its_kind_is_recorded_without_its_secret(
    alice, encryption_key
):
    # It left no trace: the history tracks the credential's kind and host, which stayed
    client = client_for(alice)
    first = {"kind": "bearer", "token": "first-secret-token"}
    imp = client.post(f"{API}/imports/", import_body(credential=first), format="json").json()

    second = {"kind": "bearer", "token": "second-secret-token"}
    answer = client.patch(f"{API}/imports/{imp['id']}/", {"credential": second}, format="json")
    client.patch(f"{API}/imports/{imp['id']}/", {"credential": None}, format="json")

    assert answer.status_code == 200
    story = entries(client, imp["id"])
    # (the removal's entry beside the change of its kind)
    assert [e["action"] for e in story] == [
        "credential removed",
        "updated",
        "credential replaced",
        "created",
    ]
    assert story[2]["by"] == "alice"
    assert "secret-token" not in str(story)
