"""Owners hear of imports overdue while no beat runs (project.beat_watch, schedules.overdue).

Beat dispatches the runs and schedules the maintenance that finds what was lost: a beat that
died took both with it. The API, the admin and health said `late`, and no owner heard of it
until beat was back. A worker that finds beat's last tick old now has each overdue import turn
late and its owner told, once: beat, back, counts the missed ticks into the same streak."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from common.redis_client import LAST_TICK_KEY, client
from project.beat_watch import WATCHING_KEY
from schedules import notifications, overdue
from schedules.models import NotificationDelivery, ScheduledImport
from tests.api_support import SOURCE
from tests.conftest import wait_for
from tests.factories import make_import
from tests.smtp_support import smtp_server

pytestmark = pytest.mark.django_db(transaction=True)


def overdue_import(owner, name: str, minutes: int = 10):
    imp = make_import(owner, SOURCE, name=name, dataset=name, schedule_type="interval",
                      interval_seconds=60, cron_expression="")  # fmt: skip
    ScheduledImport.objects.filter(pk=imp.pk).update(
        next_run_at=timezone.now() - timedelta(minutes=minutes)
    )
    return imp


@pytest.mark.processes
def test_a_worker_that_finds_no_beat_tells_the_owners_of_overdue_imports(alice, bob, processes):
    # Given a beat that last ticked ten minutes ago, an import overdue since, one on time and a
    # paused one overdue
    late = overdue_import(alice, "late")
    on_time = make_import(alice, SOURCE, name="on-time", dataset="on-time")
    paused = overdue_import(bob, "paused")
    ScheduledImport.objects.filter(pk=paused.pk).update(status="paused")
    client().set(LAST_TICK_KEY, f"{time.time() - 600:.3f} 0.000")
    with smtp_server() as (email_url, mailbox):
        # When workers run
        processes.start("worker", MAINTENANCE_INTERVAL_SECONDS="1", EMAIL_URL=email_url)
        processes.start("worker", MAINTENANCE_INTERVAL_SECONDS="1", EMAIL_URL=email_url,
                        WORKER_NAME="second")  # fmt: skip
        wait_for(lambda: mailbox.received(), 60, what="the late e-mail\n" + processes.logs())
        time.sleep(3)  # both workers look a few more times
        received = mailbox.received()

    # Then the overdue import turned late and its owner was told once, in words
    assert ScheduledImport.objects.get(pk=late.pk).late_since is not None
    assert ScheduledImport.objects.get(pk=on_time.pk).late_since is None
    assert ScheduledImport.objects.get(pk=paused.pk).late_since is None
    assert len(received) == 1
    body = received[0].get_payload()
    assert received[0]["Subject"] == "[importbeat] late is late"
    assert "has not been dispatched" in body and "No beat process is dispatching runs" in body
    assert NotificationDelivery.objects.filter(scheduled_import=late, event="late").count() == 1
    assert "no beat has ticked for" in processes.logs()


def test_beat_back_counts_the_missed_ticks_into_the_same_streak_and_tells_no_one_again(alice):
    from schedules import dispatch

    late = overdue_import(alice, "late", minutes=5)
    assert overdue.start_late_streaks() == [late.pk]
    assert overdue.start_late_streaks() == []  # once a streak
    told = NotificationDelivery.objects.filter(scheduled_import=late, event="late")
    assert told.count() == 1
    began = ScheduledImport.objects.get(pk=late.pk).late_since

    dispatch.dispatch_due(publish=lambda runs: None)

    back = ScheduledImport.objects.get(pk=late.pk)
    assert back.late_since == began
    assert back.missed_while_late >= 4
    notifications.on_imports_late([late.pk])  # beat's message for it, had it sent one
    assert told.count() == 1


def test_a_cluster_whose_beat_never_ran_is_left_alone(alice, monkeypatch):
    from project import beat_watch

    monkeypatch.setattr(beat_watch, "_seen", None)
    overdue_import(alice, "late")
    client().delete(LAST_TICK_KEY, WATCHING_KEY)

    assert beat_watch.look("w1") is None
    client().set(LAST_TICK_KEY, f"{time.time():.3f} 0.000")
    assert beat_watch.look("w1") is None  # beat ticks


def test_a_streak_begun_while_no_beat_runs_counts_no_tick_of_the_last_one(alice):
    # The last streak's count is left on the import when it ends: the e-mail said "It has
    # missed 5 tick(s) since it turned late" of last week's streak (review).
    from schedules import alerts

    late = overdue_import(alice, "late")
    ScheduledImport.objects.filter(pk=late.pk).update(missed_while_late=5, missed_ticks=9)

    overdue.start_late_streaks()

    late = ScheduledImport.objects.get(pk=late.pk)
    assert late.missed_while_late == 0
    assert "has not been dispatched" in alerts.late_email(late)[1]


def test_a_worker_whose_clock_is_fast_sees_beat_ticking(alice, monkeypatch):
    # The stamp is in the database's time: a worker three minutes fast said at every look that
    # no beat had ticked for three minutes (review).
    from common import database_clock
    from project import beat_watch

    overdue_import(alice, "late")
    monkeypatch.setattr(database_clock, "_measured", (time.monotonic(), -180.0))
    client().delete(WATCHING_KEY)
    client().set(LAST_TICK_KEY, f"{time.time() - 180:.3f} 0.000")  # beat ticked just now

    assert beat_watch.look("w1") is None


def test_beats_stamp_lost_with_redis_is_put_back_as_the_worker_saw_it(alice, monkeypatch):
    # Redis restarted empty while beat was away: read as "beat never ran", no worker said
    # anything however long beat stayed away, while health called beat down (restart hunt).
    from project import beat_watch

    monkeypatch.setattr(beat_watch, "_seen", None)
    overdue_import(alice, "late")
    stamp = f"{time.time() - 600:.3f} 0.000"
    client().set(LAST_TICK_KEY, stamp)
    client().delete(WATCHING_KEY)
    assert beat_watch.look("w1") is not None

    client().delete(LAST_TICK_KEY, WATCHING_KEY)  # Redis restarted empty

    assert beat_watch.look("w1") is not None
    assert client().get(LAST_TICK_KEY).decode() == stamp


def test_a_pass_cut_short_is_told_at_the_next_look(alice, bob, monkeypatch):
    # The streaks start in one statement, then their owners are told one import at a time: a
    # pass cut there (its time limit: 10,000 imports took 151 s of its 600; its worker killed)
    # left the rest untold, and the next look found no streak to start (scale hunt)
    from tasks.tasks import start_overdue_late_streaks

    first, second = overdue_import(alice, "first"), overdue_import(bob, "second")
    told = NotificationDelivery.objects.filter(event="late")

    def cut_short(import_ids: list[int]) -> None:
        raise SystemExit("the pass's time limit")

    monkeypatch.setattr(notifications, "on_imports_late", cut_short)
    with pytest.raises(SystemExit):
        start_overdue_late_streaks()
    monkeypatch.undo()
    assert told.count() == 0

    # When the watch sends the task again at its next look, beat still away
    assert start_overdue_late_streaks() == []

    # Then both owners are told, once
    assert sorted(told.values_list("scheduled_import_id", flat=True)) == [first.pk, second.pk]
    start_overdue_late_streaks()
    assert told.count() == 2


def test_many_overdue_imports_are_told_in_a_few_statements_once(alice, bob, settings):
    # Regression (scale hunt): owners were told one import a transaction, five statements
    # each: 10,000 overdue imports took 151 s of the task's 600.
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    late = [overdue_import(alice if i % 2 else bob, f"late-{i}") for i in range(40)]
    ScheduledImport.objects.filter(pk=late[0].pk).update(
        callback_url="https://example.com/h", notify_on=["late"], notify_channels=["webhook"]
    )
    told = NotificationDelivery.objects.filter(event="late")

    with CaptureQueriesContext(connection) as statements:
        started = overdue.start_late_streaks()

    assert started == sorted(imp.pk for imp in late)
    # (one of them the overdue imports' locks, taken in id order: schedules.import_locks)
    assert len(statements) <= 9, [query["sql"][:80] for query in statements]
    # each owner's e-mail, and the webhook the first asked for
    assert told.count() == 41
    assert told.filter(channel="webhook").get().scheduled_import_id == late[0].pk

    # Told again (reconciliation's look, beat's message) changes nothing
    notifications.on_imports_late(started)
    assert told.count() == 41
