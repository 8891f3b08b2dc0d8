"""`POST /imports/{id}/run`: 202 with the queued run at once; 409 naming the active run;
throttled (429)."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from schedules import services
from schedules.models import ImportRun, ScheduledImport
from tests.api_support import API, SOURCE, client_for, make_run, reset_throttle, tables_compiled
from tests.factories import make_import

pytestmark = pytest.mark.django_db


def test_a_manual_trigger_answers_202_with_the_queued_run(alice):
    imp = make_import(alice, SOURCE)

    response = client_for(alice).post(f"{API}/imports/{imp.pk}/run")

    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "queued" and body["trigger"] == "api"
    assert body["import_id"] == imp.pk and body["triggered_by"] == "alice"
    assert ImportRun.objects.get(pk=body["id"]).celery_task_id == body["celery_task_id"]


def test_the_trigger_path_works_with_a_trailing_slash_too(alice):
    imp = make_import(alice, SOURCE)

    assert client_for(alice).post(f"{API}/imports/{imp.pk}/run/").status_code == 202


@pytest.mark.parametrize("active_status", ["queued", "running", "retrying"])
def test_a_trigger_while_a_run_is_active_is_a_409_with_that_runs_id(alice, active_status):
    imp = make_import(alice, SOURCE)
    active = make_run(imp, active_status)

    response = client_for(alice).post(f"{API}/imports/{imp.pk}/run")

    assert response.status_code == 409
    body = response.json()
    assert body["active_run_id"] == active.pk and body["active_run"]["status"] == active_status
    assert body["detail"]
    assert imp.runs.count() == 1


def test_manual_triggers_are_throttled_per_user(alice, settings):
    # Given a budget of two manual triggers a minute
    settings.API_MANUAL_RUN_RATE = "2/minute"
    reset_throttle("manual_run", alice.pk)
    imp = make_import(alice, SOURCE)
    client = client_for(alice)

    # When she triggers three times
    codes = [client.post(f"{API}/imports/{imp.pk}/run").status_code for _ in range(3)]

    # Then the third is refused with 429 and a Retry-After
    assert codes == [202, 409, 429]
    throttled = client.post(f"{API}/imports/{imp.pk}/run")
    assert throttled.status_code == 429
    assert throttled.json()["detail"] and int(throttled["Retry-After"]) > 0
    reset_throttle("manual_run", alice.pk)


def test_a_trigger_reads_its_import_once_and_its_runs_only_under_the_lock(alice):
    # The trigger is the one write a user waits for; what it reads is what it needs: the import
    # (owner check), the import's lock, then the run inserted only if no run is active, checked
    # by the insert itself under the lock.
    imp = make_import(alice, SOURCE)
    client = client_for(alice)

    with CaptureQueriesContext(connection) as queries:
        response = client.post(f"{API}/imports/{imp.pk}/run")

    assert response.status_code == 202
    statements = [q["sql"] for q in queries.captured_queries]
    import_reads = [sql for sql in statements if 'FROM "schedules_scheduledimport"' in sql]
    run_reads = [sql for sql in statements if 'FROM "schedules_importrun"' in sql]
    assert len(import_reads) == 2 and import_reads[1].endswith("FOR UPDATE")
    assert len(run_reads) == 1 and run_reads[0].startswith('INSERT INTO "schedules_importrun"')
    assert "NOT EXISTS" in run_reads[0]


def test_a_trigger_compiles_no_queryset(alice):
    # The import's read, the lock, the active-run check, the insert and the history event are
    # statements written once (rows.py): compiled as querysets they were half of a trigger's
    # CPU (issue 15; auditlog's INSERT of the event and its content type, the last sixth).
    imp = make_import(alice, SOURCE)
    client = client_for(alice)
    client.get(f"{API}/me")  # the client's first request: what it sets up is not the trigger's

    with tables_compiled() as compiled:
        response = client.post(f"{API}/imports/{imp.pk}/run")

    assert response.status_code == 202
    assert compiled == []


def test_a_trigger_of_an_id_no_row_can_have_is_a_404_and_an_unknown_parameter_a_400(alice):
    imp = make_import(alice, SOURCE)
    client = client_for(alice)

    too_big = client.post(f"{API}/imports/{2**63}/run")
    misspelt = client.post(f"{API}/imports/{imp.pk}/run?forse=1")

    assert too_big.status_code == 404
    assert too_big.json()["detail"] == f"import {2**63} not found"
    assert misspelt.status_code == 400 and "forse" in misspelt.json()["errors"]
    assert not imp.runs.exists()


def test_a_trigger_of_an_import_deleted_meanwhile_queues_nothing(alice):
    # The import read by the request, then deleted before the trigger takes its lock
    imp = make_import(alice, SOURCE)
    ScheduledImport.objects.filter(pk=imp.pk).delete()

    with pytest.raises(ScheduledImport.DoesNotExist):
        services.enqueue_run(imp, trigger="api", user=alice)

    assert not ImportRun.objects.filter(scheduled_import_id=imp.pk).exists()


def test_a_dry_run_is_throttled_as_the_check_it_is(alice, settings):
    # A dry run makes a worker fetch the source while a web worker waits, as the check does;
    # it had no throttle at all
    settings.API_MANUAL_RUN_RATE = "2/minute"
    reset_throttle("source_check", alice.pk)
    reset_throttle("manual_run", alice.pk)
    imp = make_import(alice, SOURCE)
    client = client_for(alice)

    codes = [
        client.post(f"{API}/imports/check", {}, format="json").status_code,
        client.post(f"{API}/imports/?dry_run=true", {}, format="json").status_code,
        client.post(f"{API}/imports/?dry_run=true", {}, format="json").status_code,
        client.patch(f"{API}/imports/{imp.pk}/?dry_run=1", {}, format="json").status_code,
        client.patch(
            f"{API}/imports/{imp.pk}/", {"description": "saved"}, format="json"
        ).status_code,
    ]

    # (the bodies are refused before any worker is asked; the budget counts them, as it does
    # for the check) and a save that is no dry run is not throttled
    assert codes == [400, 400, 429, 429, 200]
    # ... and the checks used up a budget of their own: the owner's triggers are not refused
    assert client.post(f"{API}/imports/{imp.pk}/run").status_code == 202
    reset_throttle("source_check", alice.pk)
    reset_throttle("manual_run", alice.pk)


@pytest.mark.django_db(transaction=True)
def test_a_trigger_that_waited_for_an_accounts_deactivation_queues_nothing(alice):
    # Given alice's account being deactivated: its import paused and held, the account
    # written, not yet committed
    import threading

    import psycopg
    from django.core.exceptions import ValidationError

    imp = make_import(alice, SOURCE)
    outcome: list[object] = []

    def trigger() -> None:
        try:
            outcome.append(services.enqueue_run(imp, trigger="api", user=alice))
        except ValidationError as refused:
            outcome.append(refused)
        finally:
            connection.close()

    with psycopg.connect(**connection.get_connection_params()) as deactivation:
        deactivation.execute(
            "SELECT 1 FROM schedules_scheduledimport WHERE id = %s FOR UPDATE", [imp.pk]
        )
        deactivation.execute("UPDATE auth_user SET is_active = false WHERE id = %s", [alice.pk])
        # When she triggers it meanwhile (her request authenticated before), and the
        # deactivation then commits
        waiting = threading.Thread(target=trigger)
        waiting.start()
        waiting.join(1.0)
        deactivation.commit()
    waiting.join(30)

    # Then no run is queued for the deactivated account (it was, and ran)
    [refused] = outcome
    assert isinstance(refused, ValidationError)
    assert refused.message_dict == {"status": [services.OWNER_INACTIVE]}
    assert not ImportRun.objects.filter(scheduled_import=imp).exists()


@pytest.mark.django_db(transaction=True)
def test_a_trigger_meeting_a_queued_run_that_a_worker_skips_meanwhile_queues_its_run(
    alice, monkeypatch
):
    # Given a stale tick of the import waiting for a worker, which a worker skips (without the
    # import's lock) between the trigger's insert and its look for the run it met
    from schedules import rows
    from tests.importer_support import from_another_connection

    imp = make_import(alice, SOURCE)
    # (an earlier tick skipped: the skip below then finds the import's RunTally row of skipped
    # runs, rather than waiting on this trigger's transaction to add one)
    make_run(imp, "skipped")
    stale = make_run(imp, "queued")
    insert = rows.insert_where

    def insert_then_the_worker_skips_the_tick(instance, condition, params=()):
        inserted = insert(instance, condition, params)
        if not inserted:
            from_another_connection(lambda: services.skip_run(stale, "skipped: ran since"))
        return inserted

    monkeypatch.setattr(rows, "insert_where", insert_then_the_worker_skips_the_tick)

    # When alice triggers it, her run is queued: she was told her account was deactivated
    run = services.enqueue_run(imp, trigger="api", user=alice)

    assert ImportRun.objects.get(pk=run.pk).status == "queued"
    assert ImportRun.objects.get(pk=stale.pk).status == "skipped"
