"""Beat behind its ticks by more than a schedule's period, within the grace period (an
every-minute import under MISSED_TICK_GRACE_SECONDS=300, beat stalled for two minutes and a
half), dispatches the ticks due in one pass: the first is sent, the later ones skipped at once
as its run takes the file after them. Those were counted as a backlog of the workers: /health
said `degraded` for ten minutes ("their imports' earlier runs still waited for a worker ... are
the workers running?") and the log asked the same, though the run they were folded into had
been queued that very instant and no worker was behind. They are no backlog now; a tick that
comes while a run of an earlier pass still waits still is one.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from schedules import dispatch
from schedules.api import health
from schedules.models import ImportRun, ScheduledImport
from tests.api_support import SOURCE
from tests.factories import make_import

pytestmark = pytest.mark.django_db(transaction=True)

T0 = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def test_ticks_due_together_in_one_pass_are_no_backlog_of_the_workers(alice, settings):
    # Given an every-minute import made at 11:59:58, a grace period of five minutes, and beat
    # stalled until 12:02:30: 12:00, 12:01 and 12:02 are due, each on time still.
    settings.MISSED_TICK_GRACE_SECONDS = 300
    with time_machine.travel(T0 - timedelta(seconds=2), tick=False) as clock:
        imp = make_import(
            alice, SOURCE, schedule_type="cron", cron_expression="* * * * *", timezone="UTC",
            interval_seconds=None,
        )  # fmt: skip
        clock.move_to(T0 + timedelta(minutes=2, seconds=30))

        # When beat looks again
        sent: list[ImportRun] = []
        dispatch.dispatch_due(publish=sent.extend)

        # Then the first tick's run is sent and takes the file after the others, skipped ...
        runs = ImportRun.objects.filter(scheduled_import=imp).order_by("scheduled_for")
        assert [(run.scheduled_for, run.status) for run in runs] == [
            (T0, "queued"),
            (T0 + timedelta(minutes=1), "skipped"),
            (T0 + timedelta(minutes=2), "skipped"),
        ]
        assert [run.pk for run in sent] == [runs[0].pk]
        after = ScheduledImport.objects.get(pk=imp.pk)
        assert (after.missed_ticks, after.is_late()) == (0, False)
        # ... and no backlog of the workers is said: nothing waited for one.
        assert health.check_backlog() == {"ok": True, "skipped_ticks": 0}

        # But a tick that comes while that run still waits, a pass later, is a backlog.
        clock.move_to(T0 + timedelta(minutes=3, seconds=1))
        dispatch.dispatch_due(publish=sent.extend)
        backlog = health.check_backlog()
        assert (backlog["ok"], backlog["skipped_ticks"]) == (False, 1)
