"""Beat down across three ticks, then restarted: the missed ticks (older than the grace period
when beat looks again) are counted on each import, which is late until a tick runs on time
again; a `coalesce` import runs once for them (trigger `catchup`), a `skip` import runs none."""

import time
from datetime import timedelta

import pytest
import redis
from django.conf import settings
from django.utils import timezone

from project.beat import LEADER_LEASE
from schedules.models import ImportRun, ScheduledImport
from tests.conftest import wait_for
from tests.factories import PRODUCTS_CSV, make_import
from tests.reliability import FAST, figures

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]

INTERVAL = 4


def runs_of(imp):
    return list(ImportRun.objects.filter(scheduled_import=imp).order_by("scheduled_for"))


def test_after_three_missed_ticks_coalesce_runs_once_and_skip_waits_for_the_next_tick(
    alice, csv_server, processes
):
    redis.Redis.from_url(settings.REDIS_URL).delete(LEADER_LEASE)
    url = csv_server.serve("/p.csv", PRODUCTS_CSV)
    coalesce = make_import(alice, url, name="coalesce", interval_seconds=INTERVAL)
    skip = make_import(
        alice, url, name="skip", dataset="skip", interval_seconds=INTERVAL, catchup="skip"
    )
    processes.start("worker", **{**FAST, "WORKER_CONCURRENCY": "2"})
    beat = processes.start("beat", **FAST)
    wait_for(
        lambda: runs_of(coalesce) and runs_of(skip),
        30,
        what="a first run of each import\n" + processes.logs(),
    )

    # Given beat stopped for more than three ticks
    processes.stop(beat)
    stopped_at = timezone.now()
    time.sleep(1)  # a tick beat sent just before stopping becomes its run
    last_tick = {imp.pk: runs_of(imp)[-1].scheduled_for for imp in (coalesce, skip)}
    time.sleep(INTERVAL * 3 + 2)

    # When it starts again
    restarted_at = timezone.now()
    processes.start("beat", **FAST)
    grace = timedelta(seconds=int(FAST["MISSED_TICK_GRACE_SECONDS"]))
    # (a beat slow to start on a loaded machine may have caught up once before the stop too)
    wait_for(
        lambda: [
            r
            for r in runs_of(coalesce)
            if r.trigger == "catchup" and r.scheduled_for > last_tick[coalesce.pk]
        ],
        30,
        what="the catch-up run\n" + processes.logs(),
    )
    # ... and runs until each import's next regular tick ended its late streak (a loaded
    # machine may take a tick or two longer)
    wait_for(
        lambda: (
            not ScheduledImport.objects.filter(
                pk__in=[coalesce.pk, skip.pk], late_since__isnull=False
            ).exists()
        ),
        INTERVAL * 4 + 10,
        what="a tick on time again\n" + processes.logs(),
    )

    # Then the coalesce import ran once for all the ticks it missed (the latest of them) ...
    missed = {
        imp.pk: [
            last_tick[imp.pk] + timedelta(seconds=INTERVAL * i)
            for i in range(1, 20)
            if last_tick[imp.pk] + timedelta(seconds=INTERVAL * i) <= restarted_at - grace
        ]
        for imp in (coalesce, skip)
    }
    catchups = [
        r
        for r in runs_of(coalesce)
        if r.trigger == "catchup" and r.scheduled_for > last_tick[coalesce.pk]
    ]
    during_downtime = {
        imp.pk: [
            r
            for r in runs_of(imp)
            if last_tick[imp.pk] < r.scheduled_for <= restarted_at - grace
            and r.trigger != "catchup"
        ]
        for imp in (coalesce, skip)
    }
    coalesce_figures = figures(
        "catch-up coalesce",
        coalesce,
        0,
        missed_ticks=len(missed[coalesce.pk]),
        catchup_runs=len(catchups),
        catchup_tick=catchups[0].scheduled_for.isoformat(),
    )
    skip_missed_runs = [
        r for r in runs_of(skip) if last_tick[skip.pk] < r.scheduled_for <= restarted_at - grace
    ]
    figures(
        "catch-up skip",
        skip,
        0,
        missed_ticks=len(missed[skip.pk]),
        runs_for_missed_ticks=len(skip_missed_runs),
        runs_after_restart=sum(r.scheduled_for > restarted_at for r in runs_of(skip)),
    )
    coalesce.refresh_from_db()
    skip.refresh_from_db()
    assert len(missed[coalesce.pk]) >= 3 and len(missed[skip.pk]) >= 3
    # Then the missed ticks are counted on each import, and the late streak ended on time again
    assert coalesce.missed_ticks >= len(missed[coalesce.pk])
    assert skip.missed_ticks >= len(missed[skip.pk])
    assert coalesce.late_since is None and skip.late_since is None
    assert len(catchups) == 1
    assert catchups[0].scheduled_for > stopped_at - timedelta(seconds=INTERVAL)
    assert catchups[0].status == "succeeded"
    assert not during_downtime[coalesce.pk]
    assert coalesce_figures["duplicate_ticks"] == 0
    # ... and the skip import ran no missed tick, only the next one after the restart
    assert not skip_missed_runs
    assert any(r.scheduled_for > restarted_at for r in runs_of(skip))
