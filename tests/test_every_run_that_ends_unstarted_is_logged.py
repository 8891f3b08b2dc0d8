"""Every run that ends without starting has its line in `importbeat.runs`, naming its import
and itself, as the README's "one structured line per run start and end" says: the runs ended
many at once (a cancelled import's queue, ticks folded behind a waiting run, missed ticks whose
message was lost) had none, so an operator searching the logs for `run=812` found nothing."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from schedules import dispatch, reconcile, services, statuses
from schedules.models import ImportRun
from tests.api_support import make_run
from tests.factories import make_import

pytestmark = pytest.mark.django_db

SOURCE = "http://127.0.0.1/p.csv"
T0 = datetime(2026, 12, 2, 10, 0, 0, tzinfo=UTC)


def said(caplog, run: ImportRun) -> list[str]:
    run.refresh_from_db()
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "importbeat.runs"
        and f"run {run.status} import={run.scheduled_import_id} run={run.pk} " in r.getMessage()
    ]


@pytest.mark.parametrize("how", ["alone", "among many"])
def test_runs_cancelled_with_their_import(alice, caplog, how):
    imp = make_import(alice, SOURCE)
    run = make_run(imp, "queued")

    with caplog.at_level(logging.INFO):
        if how == "alone":
            services.cancel_import(imp)
        else:
            statuses.change_statuses([imp.pk], "cancelled", from_statuses=["active"])

    assert said(caplog, run) == [
        f"run cancelled import={imp.pk} run={run.pk} trigger=schedule"
        " reason=cancelled with its import"
    ]


def test_a_tick_folded_behind_a_waiting_run(alice, caplog):
    with time_machine.travel(T0 - timedelta(seconds=1), tick=False) as clock:
        imp = make_import(alice, SOURCE, interval_seconds=60)
        clock.move_to(T0 + timedelta(seconds=1))
        dispatch.dispatch_due(publish=lambda runs: None)
        clock.move_to(T0 + timedelta(minutes=1, seconds=1))
        with caplog.at_level(logging.INFO):
            dispatch.dispatch_due(publish=lambda runs: None)

    folded = ImportRun.objects.get(scheduled_import=imp, scheduled_for=T0 + timedelta(minutes=1))
    assert folded.status == "skipped" and len(said(caplog, folded)) == 1
    assert "takes the file after this tick" in said(caplog, folded)[0]


def test_an_older_missed_tick_whose_message_was_lost(alice, caplog, monkeypatch, settings):
    settings.MISSED_TICK_GRACE_SECONDS = 60
    monkeypatch.setattr(reconcile.services, "send_runs", lambda runs: None)
    monkeypatch.setattr(reconcile.broker, "pending_task_ids", lambda *args, **kwargs: set())
    imp = make_import(alice, SOURCE, interval_seconds=60)
    older, newer = (
        make_run(imp, "queued", trigger="schedule", scheduled_for=T0 + timedelta(minutes=m))
        for m in (0, 1)
    )
    for run in (older, newer):
        ImportRun.objects.filter(pk=run.pk).update(queued_at=run.scheduled_for, heartbeat_at=None)

    with caplog.at_level(logging.INFO):
        reconcile.recover_lost_messages(T0 + timedelta(minutes=5), timedelta(seconds=60))

    assert len(said(caplog, older)) == 1 and "a missed tick" in said(caplog, older)[0]
