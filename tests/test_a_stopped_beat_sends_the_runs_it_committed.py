"""A beat stopped (SIGTERM: a deploy, a restart) between the commit of a batch of runs and the
publish of their messages sends them before it stops (project.stop_signals).

Celery's beat stops by raising SystemExit from its signal handler, wherever beat is. Stopped
in that window, it left runs queued without a message; reconciliation found them a grace period
later and took a scheduled one for a missed tick, which an import with `catchup: skip` never
ran, its next ticks skipped meanwhile as waiting behind it. The suite's catch-up test met it on
a loaded machine. In beat's own process, on its main thread, with Celery's own handler."""

from __future__ import annotations

import os
import signal

import pytest
import redis
from celery.apps.beat import Beat
from django.conf import settings
from django.utils import timezone

from project.beat import LEADER_LEASE, ImportScheduler
from project.celery import app
from schedules import dispatch
from schedules.models import ImportRun, ScheduledImport
from tests.factories import make_import

pytestmark = pytest.mark.django_db(transaction=True)


class Service:
    """What Celery's stop handler is given: it syncs the schedule, then raises SystemExit."""

    def __init__(self, sent: list[int]) -> None:
        self.sent, self.synced_after = sent, None

    def sync(self) -> None:
        self.synced_after = list(self.sent)


def test_a_stop_during_beats_dispatch_waits_for_the_runs_to_be_sent(alice, monkeypatch):
    redis.Redis.from_url(settings.REDIS_URL).delete(LEADER_LEASE)
    imp = make_import(alice, "http://127.0.0.1/p.csv", interval_seconds=60)
    # The minute's own tick: the only one due (a second back could hold the next tick as well,
    # when the test starts within a second of the minute).
    due = timezone.now().replace(second=0, microsecond=0)
    ScheduledImport.objects.filter(pk=imp.pk).update(next_run_at=due)
    # Given beat's dispatch, which a stop reaches once the batch's runs are committed
    sent: list[int] = []

    def publish(runs: list[ImportRun]) -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        sent.extend(run.pk for run in runs)

    monkeypatch.setattr(dispatch, "publish_runs", publish)
    service = Service(sent)
    before = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
    scheduler = ImportScheduler(app=app)
    try:
        Beat(app=app).install_sync_handler(service)

        # When beat dispatches the due tick, and is stopped meanwhile
        with pytest.raises(SystemExit):
            scheduler._dispatch_imports()
    finally:
        for signum, handler in before.items():
            signal.signal(signum, handler)
        scheduler.close()
        redis.Redis.from_url(settings.REDIS_URL).delete(LEADER_LEASE)

    # Then the run's message went out first, and beat stopped after
    [run] = ImportRun.objects.filter(scheduled_import=imp)
    assert service.synced_after == [run.pk]
