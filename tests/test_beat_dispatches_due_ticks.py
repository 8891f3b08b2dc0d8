"""Beat's loop (schedules.dispatch.dispatch_due) on the real database, with frozen time: every
due tick becomes one run stamped with that tick, however late; ticks past the grace period are
missed, counted and handled per `catchup`; two beats never dispatch a tick twice."""

from __future__ import annotations

import threading
from base64 import b64encode
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext

from schedules import dispatch, reconcile, services
from schedules.api import health
from schedules.models import ImportRun, ScheduledImport
from tests.factories import make_import
from tests.test_metrics_endpoint import samples

pytestmark = pytest.mark.django_db(transaction=True)

SOURCE = "http://127.0.0.1/p.csv"
METRICS_AUTH = ("ops", "pw")
T0 = datetime(2026, 12, 2, 10, 0, 0, tzinfo=UTC)


def run_beat_once(sent: list[ImportRun] | None = None) -> dispatch.DispatchResult:
    return dispatch.dispatch_due(publish=(sent.extend if sent is not None else lambda runs: None))


def ticks_of(imp) -> list[datetime]:
    return list(
        ImportRun.objects.filter(scheduled_import=imp)
        .order_by("scheduled_for")
        .values_list("scheduled_for", flat=True)
    )


def test_a_late_dispatch_records_the_tick_it_was_due_for_and_drops_none_between(alice, settings):
    settings.MISSED_TICK_GRACE_SECONDS = 60
    with time_machine.travel(T0 - timedelta(seconds=5), tick=False) as clock:
        imp = make_import(alice, SOURCE, interval_seconds=10)
        # Given beat stalls for 35 s, within the grace period
        clock.move_to(T0 + timedelta(seconds=35))

        # When it looks again
        sent: list[ImportRun] = []
        result = run_beat_once(sent)

    # Then every tick since the stall has its own run, stamped with its own tick ...
    expected = [T0 + timedelta(seconds=s) for s in (0, 10, 20, 30)]
    assert ticks_of(imp) == expected
    # ... the first is sent, and the later ones are skipped at once: the first one takes the
    # file after them (four runs of one import at one moment loaded one file four times)
    first = ImportRun.objects.get(scheduled_import=imp, scheduled_for=T0)
    assert [(r.pk, r.trigger) for r in sent] == [(first.pk, "schedule")]
    later = ImportRun.objects.filter(scheduled_import=imp).exclude(pk=first.pk)
    assert {r.status for r in later} == {"skipped"}
    queued = T0 + timedelta(seconds=35)
    assert {r.error_message for r in later} == {
        f"skipped: run {first.pk} of this import, queued at {queued:%Y-%m-%d %H:%M:%S} UTC, "
        "still waits for a worker, and takes the file after this tick"
    }
    assert result.missed == 0
    imp.refresh_from_db()
    assert imp.next_run_at == T0 + timedelta(seconds=40)
    assert imp.late_since is None and imp.missed_ticks == 0


def test_it_dispatches_each_tick_once_however_often_beat_looks(alice):
    with time_machine.travel(T0 - timedelta(seconds=1), tick=False) as clock:
        imp = make_import(alice, SOURCE, interval_seconds=60)
        for second in range(0, 125, 1):
            clock.move_to(T0 + timedelta(seconds=second))
            run_beat_once()

    assert ticks_of(imp) == [T0, T0 + timedelta(minutes=1), T0 + timedelta(minutes=2)]


def test_a_tick_whose_import_still_has_a_run_waiting_for_a_worker_is_skipped_unsent(
    alice, client, settings
):
    with time_machine.travel(T0 - timedelta(seconds=1), tick=False) as clock:
        waits = make_import(alice, SOURCE, name="waits", interval_seconds=60)
        taken = make_import(alice, SOURCE, name="taken", dataset="taken", interval_seconds=60)
        clock.move_to(T0 + timedelta(seconds=1))
        run_beat_once()
        # Given the 10:00 run of one import was taken by a worker, and the other's still waits
        ImportRun.objects.filter(scheduled_import=taken).update(
            status="running", started_at=T0 + timedelta(seconds=2)
        )
        waiting = ImportRun.objects.get(scheduled_import=waits)

        # When the 10:01 tick comes
        clock.move_to(T0 + timedelta(minutes=1, seconds=1))
        sent: list[ImportRun] = []
        run_beat_once(sent)

    # Then the import whose run still waits gets a skipped run, unsent, naming the waiting run
    tick = T0 + timedelta(minutes=1)
    folded = ImportRun.objects.get(scheduled_import=waits, scheduled_for=tick)
    assert folded.status == "skipped" and folded.finished_at is not None
    assert folded.error_message == (
        f"skipped: run {waiting.pk} of this import, queued at {waiting.queued_at:%Y-%m-%d %H:%M:%S}"
        " UTC, still waits for a worker, and takes the file after this tick"
    )
    # ... and the other import's tick, whose run is running, is queued and sent as before
    queued = ImportRun.objects.get(scheduled_import=taken, scheduled_for=tick)
    assert queued.status == "queued"
    assert [r.pk for r in sent] == [queued.pk]
    # ... and no tick is missed or late
    assert ScheduledImport.objects.get(pk=waits.pk).missed_ticks == 0
    # ... but health is degraded, saying ticks are skipped behind runs waiting for a worker
    backlog = health.check_backlog()
    assert backlog["ok"] is False and backlog["skipped_ticks"] == 1
    assert backlog["message"] == (
        f"1 scheduled tick skipped from {tick + timedelta(seconds=1):%Y-%m-%d %H:%M} to "
        f"{tick + timedelta(seconds=1):%H:%M} UTC: their imports' earlier runs still waited "
        f"for a worker (the oldest queued at {waiting.queued_at:%H:%M:%S} UTC); are the "
        "workers running, and enough of them?"
    )
    assert health.report()[0]["status"] == "degraded"
    settings.FLOWER_BASIC_AUTH = ":".join(METRICS_AUTH)
    basic = b64encode(":".join(METRICS_AUTH).encode()).decode()
    scraped = client.get("/metrics", HTTP_AUTHORIZATION=f"Basic {basic}")
    assert (
        samples(scraped.content.decode())[("importbeat_ticks_skipped_behind_a_waiting_run", ())]
        == 1
    )


@pytest.mark.parametrize("noted_s_before", [50, 70], ids=["noted lately", "noted long ago"])
def test_a_tick_behind_a_run_waiting_under_its_owners_cap_says_so_and_degrades_nothing(
    alice, noted_s_before
):
    with time_machine.travel(T0 - timedelta(seconds=1), tick=False) as clock:
        imp = make_import(alice, SOURCE, interval_seconds=60)
        clock.move_to(T0 + timedelta(seconds=1))
        run_beat_once()
        # Given the 10:00 run waits its turn: its owner's other runs are at the cap, as a
        # worker noted at its last look
        waiting = ImportRun.objects.get(scheduled_import=imp)
        ImportRun.objects.filter(pk=waiting.pk).update(
            error_message="waiting its turn: 2 runs of this owner running, at most 2 at once "
            "(MAX_RUNNING_PER_OWNER)",
            heartbeat_at=T0 + timedelta(minutes=1, seconds=1 - noted_s_before),
        )

        # When the 10:01 tick comes
        clock.move_to(T0 + timedelta(minutes=1, seconds=1))
        run_beat_once()

    folded = ImportRun.objects.get(scheduled_import=imp, scheduled_for=T0 + timedelta(minutes=1))
    if noted_s_before > 60:
        # A note older than the grace period is a run nobody looks at: a backlog (a stale note
        # hid one, health saying ok)
        assert "still waits for a worker" in folded.error_message
        assert health.check_backlog()["skipped_ticks"] == 1
        return
    # Then it is skipped naming the owner's cap: it blamed the workers
    assert folded.error_message == (
        f"skipped: run {waiting.pk} of this import, queued at {waiting.queued_at:%Y-%m-%d %H:%M:%S}"
        " UTC, still waiting its turn: 2 runs of this owner running, at most 2 at once "
        "(MAX_RUNNING_PER_OWNER); it takes the file after this tick"
    )
    # ... and one owner over their cap is no backlog of the cluster: health stays ok (it was
    # degraded, asking whether the workers ran, while one of four slots was busy)
    assert health.check_backlog() == {"ok": True, "skipped_ticks": 0}


@pytest.mark.parametrize(("catchup", "runs"), [("coalesce", 1), ("skip", 0)])
def test_ticks_missed_past_the_grace_period_are_counted_and_handled_per_catchup(
    alice, settings, catchup, runs
):
    settings.MISSED_TICK_GRACE_SECONDS = 5
    with time_machine.travel(T0 - timedelta(seconds=1), tick=False) as clock:
        imp = make_import(alice, SOURCE, interval_seconds=60, catchup=catchup)
        # Given beat was down across three ticks (10:00, 10:01, 10:02)
        clock.move_to(T0 + timedelta(minutes=2, seconds=30))

        # When it comes back
        result = run_beat_once()

        # Then the three ticks are missed and counted; coalesce runs once, for the latest
        imp.refresh_from_db()
        assert result.missed == 3 and imp.missed_ticks == 3
        assert imp.late_since is not None and imp.is_late()
        made = list(ImportRun.objects.filter(scheduled_import=imp))
        assert len(made) == runs
        if runs:
            assert made[0].trigger == "catchup"
            assert made[0].scheduled_for == T0 + timedelta(minutes=2)
        assert imp.next_run_at == T0 + timedelta(minutes=3)

        # ... which reconciliation, finding them without a run too, does not count again
        # (missed_ticks was twice the ticks missed)
        found = reconcile.reconcile()
        imp.refresh_from_db()
        assert found["ticks_without_run"] == 0 and imp.missed_ticks == 3

        # ... and the next tick dispatched on time ends the late streak
        clock.move_to(T0 + timedelta(minutes=3, seconds=1))
        run_beat_once()
        imp.refresh_from_db()
        assert imp.late_since is None and not imp.is_late()
        assert imp.missed_ticks == 3


def test_an_import_overdue_past_the_grace_period_is_late_before_beat_notices(alice, settings):
    settings.MISSED_TICK_GRACE_SECONDS = 60
    with time_machine.travel(T0 - timedelta(seconds=1), tick=False) as clock:
        imp = make_import(alice, SOURCE, interval_seconds=60)
        clock.move_to(T0 + timedelta(seconds=59))
        assert not ScheduledImport.objects.get(pk=imp.pk).is_late()
        clock.move_to(T0 + timedelta(seconds=61))
        assert ScheduledImport.objects.get(pk=imp.pk).is_late()


def test_a_paused_import_is_not_dispatched_and_resuming_starts_from_the_next_tick(alice):
    with time_machine.travel(T0 - timedelta(seconds=1), tick=False) as clock:
        imp = make_import(alice, SOURCE, interval_seconds=60)
        services.pause_import(imp)
        clock.move_to(T0 + timedelta(minutes=5, seconds=10))
        run_beat_once()
        assert ticks_of(imp) == []

        services.resume_import(imp)
        run_beat_once()
        assert ticks_of(imp) == []
        assert ScheduledImport.objects.get(pk=imp.pk).next_run_at == T0 + timedelta(minutes=6)
        assert ScheduledImport.objects.get(pk=imp.pk).missed_ticks == 0


def test_editing_an_unrelated_field_keeps_the_tick_beat_is_due_to_dispatch(alice):
    with time_machine.travel(T0 - timedelta(seconds=1), tick=False) as clock:
        imp = make_import(alice, SOURCE, interval_seconds=60)
        clock.move_to(T0 + timedelta(seconds=2))
        services.update_import(imp, description="renamed while beat was busy")
        run_beat_once()

    assert ticks_of(imp) == [T0]


def test_the_listed_next_runs_start_at_the_tick_beat_has_not_dispatched_yet(alice):
    with time_machine.travel(T0 - timedelta(seconds=1), tick=False) as clock:
        imp = make_import(alice, SOURCE, interval_seconds=60)
        clock.move_to(T0 + timedelta(seconds=3))
        listed = ScheduledImport.objects.get(pk=imp.pk).next_runs(3)
        run_beat_once()
        fired = ticks_of(imp)

    assert listed == [T0, T0 + timedelta(minutes=1), T0 + timedelta(minutes=2)]
    assert fired == listed[:1]


def test_two_beats_at_once_dispatch_each_tick_once(alice, django_user_model):
    with time_machine.travel(T0 - timedelta(seconds=1), tick=False) as clock:
        for i in range(300):
            make_import(alice, SOURCE, name=f"i{i}", dataset=f"d{i}", interval_seconds=60)
        clock.move_to(T0 + timedelta(seconds=1))
        results: list[dispatch.DispatchResult] = []

        def beat() -> None:
            try:
                results.append(dispatch.dispatch_due(publish=lambda runs: None, batch_size=50))
            finally:
                connection.close()

        beats = [threading.Thread(target=beat) for _ in range(2)]
        for thread in beats:
            thread.start()
        for thread in beats:
            thread.join()

    assert sum(result.runs for result in results) == 300
    assert ImportRun.objects.count() == 300
    assert ImportRun.objects.values("scheduled_import", "scheduled_for").distinct().count() == 300


def test_a_loop_costs_a_few_statements_per_batch_not_per_schedule(alice):
    with time_machine.travel(T0 - timedelta(seconds=1), tick=False) as clock:
        for i in range(200):
            make_import(alice, SOURCE, name=f"i{i}", dataset=f"d{i}", interval_seconds=3600)
        clock.move_to(T0 + timedelta(seconds=1))
        with CaptureQueriesContext(connection) as due:
            dispatch.dispatch_due(publish=lambda runs: None, batch_size=100)
        clock.move_to(T0 + timedelta(seconds=2))
        with CaptureQueriesContext(connection) as idle:
            dispatch.dispatch_due(publish=lambda runs: None, batch_size=100)

    # 200 hourly imports all due: two batches of a handful of statements each
    assert len(due.captured_queries) <= 2 * 8 + 3, [q["sql"][:80] for q in due.captured_queries]
    # Nothing due: one look at the index
    assert len(idle.captured_queries) <= 3


def test_the_owner_hears_once_per_late_streak(alice, settings, monkeypatch):

    from schedules import alerts

    settings.MISSED_TICK_GRACE_SECONDS = 5
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    told: list[list[int]] = []
    monkeypatch.setattr(dispatch, "_tell_owners_late", told.append)
    with time_machine.travel(T0 - timedelta(seconds=1), tick=False) as clock:
        imp = make_import(alice, SOURCE, interval_seconds=60)
        # Given beat misses ticks twice in a row, without a tick on time in between
        clock.move_to(T0 + timedelta(minutes=2, seconds=30))
        run_beat_once()
        clock.move_to(T0 + timedelta(minutes=5, seconds=30))
        run_beat_once()
        assert told == [[imp.pk]]
        # ... and the mail says what happened
        subject, message = alerts.late_email(ScheduledImport.objects.get(pk=imp.pk))
        assert subject == "[importbeat] products is late"
        assert "a tick passed without a run (noticed at " in message
        assert "It has missed 6 tick(s) since it turned late (6 in all)." in message

        # When a tick runs on time, then ticks are missed again
        clock.move_to(T0 + timedelta(minutes=6, seconds=1))
        run_beat_once()
        clock.move_to(T0 + timedelta(minutes=9, seconds=30))
        run_beat_once()
        _, message = alerts.late_email(ScheduledImport.objects.get(pk=imp.pk))

    # Then a second streak tells the owner again, with its own count (it said the lifetime's)
    assert told == [[imp.pk], [imp.pk]]
    assert "It has missed 3 tick(s) since it turned late (9 in all)." in message


def test_after_an_outage_missed_ticks_are_logged_in_one_line_per_batch(alice, settings, caplog):
    settings.MISSED_TICK_GRACE_SECONDS = 5
    with time_machine.travel(T0 - timedelta(seconds=1), tick=False) as clock:
        imports = [
            make_import(alice, SOURCE, name=f"i{n}", dataset=f"d{n}", interval_seconds=60)
            for n in range(dispatch.MISSED_LOG_EXAMPLES + 3)
        ]
        # Given beat was down across three ticks of every import
        clock.move_to(T0 + timedelta(minutes=2, seconds=30))

        # When it comes back
        with caplog.at_level("WARNING", logger=dispatch.logger.name):
            run_beat_once()

    # Then one line says how many ticks of how many imports, with a few of them named
    lines = [r.getMessage() for r in caplog.records if "missed ticks" in r.getMessage()]
    assert len(lines) == 1
    assert f"count={3 * len(imports)} imports={len(imports)}" in lines[0]
    assert f"import={imports[0].pk}:count=3" in lines[0]
    assert lines[0].endswith(" and 3 more imports")


def test_a_backlog_note_that_cannot_be_read_is_no_answer_not_a_server_error():
    from common.redis_client import BACKLOG_KEY, client

    client().hset(BACKLOG_KEY, mapping={"skipped": "3"})  # no times: not what beat writes

    assert health.check_backlog() == {"ok": False, "skipped_ticks": None}


def test_a_reconciliation_cut_by_its_time_limit_counts_no_tick_twice(alice, settings, monkeypatch):
    # Given three imports whose ticks went by without runs (messages lost, beat's counting
    # done), none reconciled yet
    from celery.exceptions import SoftTimeLimitExceeded

    settings.MISSED_TICK_GRACE_SECONDS = 5
    monkeypatch.setattr(reconcile.services, "send_runs", lambda runs: None)
    with time_machine.travel(T0 - timedelta(seconds=1), tick=False) as clock:
        imports = [
            make_import(alice, SOURCE, name=f"i{n}", dataset=f"d{n}", interval_seconds=60)
            for n in range(3)
        ]
        clock.move_to(T0 + timedelta(minutes=2, seconds=30))
        ScheduledImport.objects.update(next_run_at=T0 + timedelta(minutes=3))

        # When a pass is cut (its soft time limit) after it handled its first batch (an
        # import a batch here)
        monkeypatch.setattr(reconcile, "BATCH", 1)
        handle = reconcile._handle_ticks_without_runs
        handled = []

        def cut_after_one(*args) -> None:
            if handled:
                raise SoftTimeLimitExceeded()
            handled.append(handle(*args))

        monkeypatch.setattr(reconcile, "_handle_ticks_without_runs", cut_after_one)
        now, grace = T0 + timedelta(minutes=2, seconds=30), timedelta(seconds=5)
        with pytest.raises(SoftTimeLimitExceeded):
            reconcile.find_ticks_without_runs(now, grace)
        monkeypatch.setattr(reconcile, "_handle_ticks_without_runs", handle)

        # ... and the next pass runs
        reconcile.find_ticks_without_runs(now, grace)

    # Then every import counts its three missed ticks once
    assert [ScheduledImport.objects.get(pk=i.pk).missed_ticks for i in imports] == [3, 3, 3]


def test_reconciliation_leaves_an_import_paused_since_it_read_its_batch(alice, monkeypatch):
    # It locked the import but acted on it as read: after a pause answered 200, a catch-up run
    # went out and the owner heard the import was late
    monkeypatch.setattr(reconcile.services, "send_runs", lambda runs: None)
    with time_machine.travel(T0 - timedelta(seconds=1), tick=False) as clock:
        imp = make_import(alice, SOURCE, interval_seconds=60, catchup="coalesce")
        clock.move_to(T0 + timedelta(minutes=2, seconds=30))
        read_by_the_pass = ScheduledImport.objects.get(pk=imp.pk)
        services.pause_import(ScheduledImport.objects.get(pk=imp.pk))

        reconcile._handle_ticks_without_runs(
            [(read_by_the_pass, [T0, T0 + timedelta(minutes=1)], T0 + timedelta(minutes=2))],
            T0 + timedelta(minutes=2, seconds=30),
        )

    imp.refresh_from_db()
    # (The pause itself counted 10:00 and 10:01, past the grace period before beat got to them,
    # and ended the import's lateness: reconciliation counts nothing more.)
    assert (imp.status, imp.missed_ticks, imp.late_since) == ("paused", 2, None)
    assert not ImportRun.objects.filter(scheduled_import=imp).exists()


def test_beat_waits_a_moment_when_the_due_imports_are_locked_by_someone_else(alice):
    # It looped at once, without a pause: 3,600 transactions in 5 s of a lock held
    import psycopg

    from project import beat as beat_module
    from project.celery import app

    imp = make_import(alice, SOURCE, interval_seconds=60)
    ScheduledImport.objects.filter(pk=imp.pk).update(next_run_at=T0.replace(year=2020))
    scheduler = beat_module.ImportScheduler(app=app)
    try:
        with psycopg.connect(**connection.get_connection_params()) as holder:
            holder.execute(
                "SELECT 1 FROM schedules_scheduledimport WHERE id = %s FOR UPDATE", [imp.pk]
            )
            wait = scheduler._dispatch_imports()
    finally:
        scheduler.close()

    assert wait == beat_module.LOCKED_DUE_WAIT_SECONDS


def test_a_dispatched_run_deleted_by_an_operator_is_no_missed_tick(alice, settings, monkeypatch):
    # Its tick, found without a run, was taken for a missed one: a catch-up ran the tick the
    # operator had stopped, and the owner heard the import was late
    settings.MISSED_TICK_GRACE_SECONDS = 5
    monkeypatch.setattr(reconcile.services, "send_runs", lambda runs: None)
    with time_machine.travel(T0 - timedelta(seconds=1), tick=False) as clock:
        imp = make_import(alice, SOURCE, interval_seconds=60, catchup="coalesce")
        clock.move_to(T0 + timedelta(seconds=1))
        run_beat_once()
        [run] = ImportRun.objects.filter(scheduled_import=imp)
        services.delete_runs(ImportRun.objects.filter(pk=run.pk))  # the admin's deletion

        clock.move_to(T0 + timedelta(seconds=50))
        found = reconcile.reconcile()

    imp.refresh_from_db()
    assert found["ticks_without_run"] == 0
    assert (imp.missed_ticks, imp.late_since) == (0, None)
    assert not ImportRun.objects.filter(scheduled_import=imp).exists()


@pytest.mark.parametrize("catchup", ["coalesce", "skip"])
def test_a_tick_whose_message_was_lost_runs_whatever_catchup_says(
    alice, settings, monkeypatch, catchup
):
    # Given a tick dispatched on time whose message was lost (beat killed between its commit
    # and its publish), and the next tick folded into it ("takes the file after this tick")
    settings.MISSED_TICK_GRACE_SECONDS = 60
    resent: list[ImportRun] = []
    monkeypatch.setattr(reconcile.services, "send_runs", resent.extend)
    monkeypatch.setattr(reconcile.broker, "pending_task_ids", lambda *args, **kwargs: set())
    with time_machine.travel(T0 - timedelta(seconds=1), tick=False) as clock:
        imp = make_import(alice, SOURCE, interval_seconds=60, catchup=catchup)
        clock.move_to(T0 + timedelta(seconds=1))
        run_beat_once()
        clock.move_to(T0 + timedelta(seconds=61))
        run_beat_once()
        lost, folded = ImportRun.objects.filter(scheduled_import=imp).order_by("scheduled_for")
        assert f"run {lost.pk} of this import" in folded.error_message

        # When reconciliation finds its message lost
        clock.move_to(T0 + timedelta(seconds=75))
        reconcile.recover_lost_messages(T0 + timedelta(seconds=75), timedelta(seconds=60))

    # Then it is sent again as the import's catch-up run, under `skip` too: it was skipped, and
    # the ticks folded into it with it (a daily import lost its day's run)
    lost.refresh_from_db()
    assert (lost.status, lost.trigger) == ("queued", "catchup")
    assert [run.pk for run in resent] == [lost.pk]


def test_beat_hands_the_late_notifications_to_a_worker_in_one_message(alice, monkeypatch):
    # Made in beat's process before it published its runs, they slowed its dispatch fifteen
    # times after an outage (2.5-3.5 s a batch of 1,000 late imports, against 0.16 s)
    from celery import current_app

    from schedules.models import NotificationDelivery
    from tasks.tasks import notify_late_imports

    sent: list[tuple[str, list]] = []
    monkeypatch.setattr(current_app, "send_task", lambda name, args: sent.append((name, args)))
    with time_machine.travel(T0 - timedelta(seconds=1), tick=False) as clock:
        imports = [
            make_import(alice, SOURCE, name=f"feed{n}", dataset=f"d{n}", interval_seconds=60)
            for n in range(3)
        ]
        clock.move_to(T0 + timedelta(minutes=2, seconds=30))
        run_beat_once()

    assert sent == [("importbeat.notify_late_imports", [[imp.pk for imp in imports]])]
    assert not NotificationDelivery.objects.exists()
    notify_late_imports(*sent[0][1])
    assert NotificationDelivery.objects.filter(event="late").count() == 3


def test_a_late_streak_whose_notice_was_lost_is_told_at_the_next_reconciliation(
    alice, monkeypatch, settings
):
    # Beat's one message lost (a Redis restarted empty): no delivery was ever made
    from celery import current_app

    from schedules.models import NotificationDelivery

    settings.MISSED_TICK_GRACE_SECONDS = 60
    monkeypatch.setattr(current_app, "send_task", lambda name, args: None)
    with time_machine.travel(T0 - timedelta(seconds=1), tick=False) as clock:
        imp = make_import(alice, SOURCE, interval_seconds=60)
        clock.move_to(T0 + timedelta(minutes=2, seconds=30))
        run_beat_once()
        assert not NotificationDelivery.objects.exists()

        clock.move_to(T0 + timedelta(minutes=4))
        reconcile.tell_late_owners_not_told(T0 + timedelta(minutes=3))
        reconcile.tell_late_owners_not_told(T0 + timedelta(minutes=3))  # (once a streak)

    assert list(NotificationDelivery.objects.values_list("scheduled_import", "event")) == [
        (imp.pk, "late")
    ]


def test_a_late_streak_told_by_reconciliation_is_not_told_again_by_beats_late_message(
    alice, monkeypatch, settings
):
    # Beat's message waited behind a busy queue past the grace period: reconciliation told
    # the owner meanwhile, and the message must not tell them twice
    from celery import current_app

    from schedules.models import NotificationDelivery
    from tasks.tasks import notify_late_imports

    settings.MISSED_TICK_GRACE_SECONDS = 60
    sent: list[list] = []
    monkeypatch.setattr(current_app, "send_task", lambda name, args: sent.append(args))
    with time_machine.travel(T0 - timedelta(seconds=1), tick=False) as clock:
        make_import(alice, SOURCE, interval_seconds=60)
        clock.move_to(T0 + timedelta(minutes=2, seconds=30))
        run_beat_once()
        clock.move_to(T0 + timedelta(minutes=4))
        reconcile.tell_late_owners_not_told(T0 + timedelta(minutes=3))
        notify_late_imports(*sent[0])

    assert NotificationDelivery.objects.filter(event="late").count() == 1
