"""Two beat processes at once dispatch each tick once; when the leader dies, the standby takes
over within its lease and catches up the tick it missed."""

import re
import signal
import time
from datetime import timedelta

import pytest
import redis
from django.conf import settings
from django.utils import timezone

from project.beat import LEADER_LEASE
from schedules.models import ImportRun
from tests.conftest import wait_for
from tests.factories import PRODUCTS_CSV, make_import
from tests.reliability import FAST, figures

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]

INTERVAL = 5
TICKS_BEFORE = 3  # ticks both beats see before the leader is killed


def ticks_of(imp) -> list:
    runs = ImportRun.objects.filter(scheduled_import=imp, scheduled_for__isnull=False)
    return sorted(set(runs.values_list("scheduled_for", flat=True)))


def test_two_beats_dispatch_every_tick_once_and_a_standby_takes_over_within_its_lease(
    alice, csv_server, processes
):
    redis.Redis.from_url(settings.REDIS_URL).delete(LEADER_LEASE)
    imp = make_import(alice, csv_server.serve("/p.csv", PRODUCTS_CSV), interval_seconds=INTERVAL)
    worker = processes.start("worker", **{**FAST, "WORKER_CONCURRENCY": "2"})
    beats = [processes.start("beat", **FAST) for _ in range(2)]
    beat_logs = [processes.log_dir / f"beat-{i}.log" for i in (1, 2)]
    assert worker
    wait_for(
        lambda: ImportRun.objects.filter(scheduled_import=imp).exists(),
        30,
        what="the first run\n" + processes.logs(),
    )
    started = time.monotonic()

    # Two beats for TICKS_BEFORE ticks
    wait_for(
        lambda: len(ticks_of(imp)) >= TICKS_BEFORE,
        INTERVAL * TICKS_BEFORE + 20,
        what="ticks of two beats\n" + processes.logs(),
    )
    leaders = [i for i, log in enumerate(beat_logs) if "became the leader" in log.read_text()]
    assert len(leaders) == 1, processes.logs()
    leader = leaders[0]

    # When the leader is SIGKILLed (its lease is left to expire), the standby carries on
    killed_at = time.monotonic()
    processes.stop(beats[leader], signal.SIGKILL)
    standby_log = beat_logs[1 - leader]
    wait_for(lambda: "became the leader" in standby_log.read_text(), 30, what="a take-over")
    takeover_s = time.monotonic() - killed_at
    taken_over_at = timezone.now()
    # ... until it dispatched a tick due after its take-over: the ticks due while the lease
    # expired lie between the first tick and that one, so a tick it missed shows below.
    wait_for(
        lambda: ticks_of(imp)[-1] > taken_over_at,
        INTERVAL + 20,
        what="a tick of the new leader\n" + processes.logs(),
    )
    # Let the last dispatched tick's run finish before counting.
    time.sleep(2)

    runs = list(ImportRun.objects.filter(scheduled_import=imp).order_by("scheduled_for"))
    ticks = [r.scheduled_for for r in runs]
    expected = [
        ticks[0] + timedelta(seconds=INTERVAL * i)
        for i in range(int((ticks[-1] - ticks[0]).total_seconds()) // INTERVAL + 1)
    ]
    missed = sorted(set(expected) - set(ticks))
    worker_log = "\n".join(p.read_text() for p in processes.log_dir.glob("worker-*.log"))
    refused = len(re.findall("tick already dispatched", worker_log))
    result = figures(
        "two beats",
        imp,
        0,
        seconds=round(time.monotonic() - started),
        ticks_expected=len(expected),
        missed_ticks=len(missed),
        catchup_runs=sum(r.trigger == "catchup" for r in runs),
        duplicate_dispatches_refused=refused,
        takeover_s=round(takeover_s, 1),
        statuses=sorted({r.status for r in runs}),
    )
    assert result["duplicate_ticks"] == 0
    assert not missed, missed
    assert takeover_s < int(FAST["BEAT_LEADER_LEASE_SECONDS"]) + 10
    # A catch-up run and the next tick can meet: the later one is then `skipped` (overlap).
    assert {r.status for r in runs} <= {"succeeded", "skipped", "running", "queued"}
