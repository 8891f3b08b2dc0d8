"""Pausing, resuming or cancelling many imports (the admin's list actions, an account's
deactivation) is a few statements for the lot, and leaves each import, its beat entry and its
history as pausing it alone does: one by one, 10,000 imports took 85 s in one request."""

import pytest
from auditlog.context import set_extra_data
from auditlog.models import LogEntry
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django_celery_beat.models import PeriodicTask

from schedules import history, services, statuses
from schedules.models import ImportRun, ScheduledImport
from tests.api_support import SOURCE, make_run
from tests.factories import make_import

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/schedules/scheduledimport/"
SINGLE = {"paused": services.pause_import, "active": services.resume_import,
          "cancelled": services.cancel_import}  # fmt: skip


@pytest.fixture
def root(django_user_model):
    return django_user_model.objects.create_superuser("root", "r@example.com", "x")


def imports_of(owner, prefix: str, count: int, **fields) -> list[ScheduledImport]:
    return [
        make_import(
            owner, SOURCE, name=f"{prefix}{i}", dataset=f"{prefix}{i}",
            schedule_type="cron", cron_expression="0 3 * * *", **fields,
        )
        for i in range(count)
    ]  # fmt: skip


def state(imp: ScheduledImport) -> dict:
    imp.refresh_from_db()
    task = PeriodicTask.objects.get(pk=imp.periodic_task_id)
    entries = [
        {key: value for key, value in row.items() if key not in ("id", "timestamp", "object_pk",
                                                                 "object_id", "object_repr")}
        for row in history.entries_for(imp).filter(action=LogEntry.Action.UPDATE).values()
    ]  # fmt: skip
    return {
        "status": imp.status, "next_run_at": imp.next_run_at, "late_since": imp.late_since,
        "enabled": task.enabled, "last_run_at": task.last_run_at, "history": entries,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("before", "after"),
    [("active", "paused"), ("paused", "active"), ("active", "cancelled"), ("cancelled", "active")],
)
def test_many_at_once_leave_each_import_as_one_at_a_time_does(alice, bob, before, after):
    # Given two alike imports of alice, in the same status
    one, other = imports_of(alice, "feed", 2)
    for imp in (one, other):
        if before != "active":
            SINGLE[before](imp)
    ScheduledImport.objects.filter(pk__in=[one.pk, other.pk]).update(late_since="2026-01-01T00:00Z")

    # When bob, through the admin, changes one alone and the other among many
    context = {"actor": bob, "remote_addr": "203.0.113.9", "remote_port": None}
    via = history.via.set("admin")
    try:
        with set_extra_data(context_data=context):
            SINGLE[after](ScheduledImport.objects.get(pk=one.pk))
            changes = statuses.change_statuses([other.pk], after, from_statuses=[before])
    finally:
        history.via.reset(via)

    # Then both are alike: status, next tick, lateness, beat entry, the history's entries
    assert [imp.pk for imp in changes.changed] == [other.pk] and not changes.left
    assert state(one) == state(other)
    assert state(other)["status"] == after
    assert state(other)["history"][0]["changes"] == {"status": [before, after]}
    assert state(other)["history"][0]["actor_id"] == bob.pk


def test_cancelling_many_ends_their_waiting_runs(alice):
    imports = imports_of(alice, "feed", 3)
    queued = [make_run(imp, "queued") for imp in imports]
    running = make_run(imports[0], "running")

    statuses.change_statuses([imp.pk for imp in imports], "cancelled", from_statuses=["active"])

    assert {run.status for run in ImportRun.objects.filter(pk__in=[r.pk for r in queued])} == {
        "cancelled"
    }
    running.refresh_from_db()
    assert running.status == "running"  # it finishes


def test_an_admin_action_on_many_imports_takes_as_many_statements_as_on_a_few(client, root, alice):
    # Given 5 of alice's imports and then 60 more
    client.force_login(root)
    few = imports_of(alice, "few", 5)
    many = few + imports_of(alice, "many", 55)

    def statements(action: str, imports) -> int:
        with CaptureQueriesContext(connection) as queries:
            response = client.post(
                CHANGELIST, {"action": action, "_selected_action": [i.pk for i in imports]}
            )
        assert response.status_code == 302
        return len(queries)

    # When each action is taken on the few, then on the many
    for action, status in (("pause", "paused"), ("resume", "active"), ("cancel", "cancelled")):
        on_few = statements(action, few)
        on_many = statements(action, many)

        # Then it costs no statement per import, and every import took it
        assert on_many <= on_few + 2, (action, on_few, on_many)
        assert set(ScheduledImport.objects.values_list("status", flat=True)) == {status}


def test_deactivating_an_owner_of_many_imports_pauses_them_in_a_few_statements(alice):
    imports_of(alice, "feed", 40)

    alice.is_active = False
    with CaptureQueriesContext(connection) as queries:
        alice.save()

    assert len(queries) < 20, len(queries)
    assert set(ScheduledImport.objects.values_list("status", flat=True)) == {"paused"}
    assert not PeriodicTask.objects.filter(name__contains="feed", enabled=True).exists()


def test_deactivating_an_owner_cancels_their_waiting_runs_and_no_one_elses(alice, bob):
    # A retry of theirs fetched and wrote after the account was closed
    mine, paused, bobs = (*imports_of(alice, "a", 2), imports_of(bob, "b", 1)[0])
    services.pause_import(paused)
    queued, retrying, waiting_too = (
        make_run(mine, "queued"),
        make_run(mine, "retrying"),
        make_run(paused, "queued"),
    )
    running, others = make_run(imports_of(alice, "c", 1)[0], "running"), make_run(bobs, "queued")

    alice.is_active = False
    alice.save()

    statuses_now = dict(ImportRun.objects.values_list("pk", "status"))
    assert [statuses_now[r.pk] for r in (queued, retrying, waiting_too)] == ["cancelled"] * 3
    assert ImportRun.objects.get(pk=queued.pk).error_message == (
        "cancelled: its owner's account was deactivated"
    )
    # A running attempt ends as it goes; another owner's run is not touched
    assert (statuses_now[running.pk], statuses_now[others.pk]) == ("running", "queued")


def test_a_resume_of_many_leaves_those_of_a_deactivated_owner_and_says_why(alice, bob):
    mine, bobs = imports_of(alice, "a", 1)[0], imports_of(bob, "b", 1)[0]
    statuses.change_statuses([mine.pk, bobs.pk], "paused", from_statuses=["active"])
    bob.is_active = False
    bob.save()

    changes = statuses.change_statuses([mine.pk, bobs.pk], "active", from_statuses=["paused"])

    assert [imp.pk for imp in changes.changed] == [mine.pk]
    assert [(imp.pk, why) for imp, why in changes.left] == [(bobs.pk, statuses.OWNER_INACTIVE)]
    assert ScheduledImport.objects.get(pk=bobs.pk).status == "paused"


def test_a_resume_of_many_makes_the_beat_entry_an_import_lost(alice):
    # Its entry deleted in the admin: resuming it alone made one again, among many it had none
    one, other = imports_of(alice, "feed", 2)
    for imp in (one, other):
        services.pause_import(imp)
        PeriodicTask.objects.filter(pk=imp.periodic_task_id).delete()  # SET_NULL on the import

    services.resume_import(ScheduledImport.objects.get(pk=one.pk))
    statuses.change_statuses([other.pk], "active", from_statuses=["paused"])

    for imp in (one, other):
        imp.refresh_from_db()
        assert PeriodicTask.objects.get(pk=imp.periodic_task_id).enabled
        assert imp.next_run_at is not None
