"""A worker that loses its database while it runs takes no tick with it (every tick still gets
exactly one run) and is named broken by `/api/v1/health`, saying what it cannot reach and why.
(One that cannot reach its database when it starts does not start:
tests/test_worker_not_started_without_its_database_or_broker.py.)"""

from __future__ import annotations

from datetime import timedelta

import pytest

from project.celery import app
from schedules.api.health import check_workers
from schedules.models import ImportRun
from tests.conftest import wait_for
from tests.factories import PRODUCTS_CSV, make_import
from tests.reliability import FAST, DatabaseProxy

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]

INTERVAL = 4
# Six ticks: ten took 56 s of CI's 15 minutes, and four more say nothing two more do not.
TICKS = 6


def pings(limit: int) -> list:
    """The workers' answers to a ping, as soon as `limit` of them answered."""
    with app.connection_for_write() as broker:
        return app.control.ping(timeout=3, limit=limit, connection=broker) or []


def test_a_worker_that_loses_its_database_takes_no_tick_and_health_names_it_broken(
    alice, csv_server, processes, settings
):
    # Two busy workers on two cores may take more than the default half second to answer.
    settings.HEALTH_WORKER_PING_TIMEOUT = 3
    # Given a healthy worker, and a second one whose database is behind a proxy
    proxy = DatabaseProxy()
    imp = make_import(alice, csv_server.serve("/p.csv", PRODUCTS_CSV), interval_seconds=INTERVAL)
    processes.start("worker", **{**FAST, "WORKER_NAME": "healthy"})
    processes.start("worker", **{**FAST, "WORKER_NAME": "partitioned", "DATABASE_URL": proxy.url})
    # (asked as health asks, but done once both answered: health's ask waits its timeout twice)
    wait_for(lambda: len(pings(limit=2)) == 2, 60, what="two workers\n" + processes.logs())

    # When the second one loses its database, and beat runs for six ticks
    proxy.cut()
    processes.start("beat", **FAST)
    first = wait_for(
        lambda: ImportRun.objects.filter(scheduled_import=imp).order_by("scheduled_for").first(),
        30,
        what="the first run\n" + processes.logs(),
    )
    last_tick = first.scheduled_for + timedelta(seconds=INTERVAL * (TICKS - 1))

    def settled():
        runs = list(ImportRun.objects.filter(scheduled_import=imp, scheduled_for__lte=last_tick))
        return len(runs) == TICKS and all(not run.is_active for run in runs) and runs

    runs = wait_for(settled, INTERVAL * TICKS + 90, what="six settled ticks\n" + processes.logs())
    health = check_workers()

    # Then every tick has exactly one run, none lost, and each ran on the healthy worker
    ticks = [run.scheduled_for for run in runs]
    print(
        f"\n[figures] partitioned worker: ticks={len(ticks)} "
        f"statuses={sorted({r.status for r in runs})} "
        f"workers={sorted({r.worker for r in runs})} broken={health['broken']}",
        flush=True,
    )
    assert len(set(ticks)) == TICKS
    # (a tick that came while the run a lost worker handed back still waited for a worker is
    # skipped at dispatch in that run's favour: that run took the file after it)
    ran = [r for r in runs if r.status == "succeeded"]
    folded = [r for r in runs if r.status != "succeeded"]
    assert all(r.status == "skipped" and "still waits for a worker" in r.error_message
               for r in folded), [(r.status, r.error_message) for r in runs]  # fmt: skip
    assert len(ran) >= TICKS - 2
    assert {r.worker for r in ran} == {"healthy@" + r.worker.split("@")[1] for r in ran}
    # ... and health names the worker that answers pings but cannot reach its database
    assert not health["ok"], health
    assert [b["worker"].split("@")[0] for b in health["broken"]] == ["partitioned"]
    assert health["broken"][0]["error"] == (
        f"cannot reach the database {proxy.database} at 127.0.0.1:{proxy.port}: connection refused"
    )


def test_a_worker_whose_database_drops_its_packets_is_named_broken(processes):
    # Given a worker whose database is behind a proxy, found fine by health
    proxy = DatabaseProxy()
    processes.start("worker", **{**FAST, "WORKER_NAME": "unanswered", "DATABASE_URL": proxy.url})
    wait_for(lambda: check_workers()["workers"], 60, what="the worker\n" + processes.logs())
    assert check_workers()["broken"] == []

    # When its database stops answering, refusing nothing (its packets dropped)
    proxy.black_hole()
    try:
        # Then health names it broken within a few asks (each one every 10 s in production)
        asks = []

        def named_broken():
            asks.append(check_workers())
            return asks[-1]["broken"]

        broken = wait_for(named_broken, 30, interval=1, what="the worker named broken")
    finally:
        proxy.cut()
    print(f"\n[figures] asks until named broken: {len(asks)}", flush=True)
    assert [b["worker"].split("@")[0] for b in broken] == ["unanswered"]
    assert broken[0]["error"].startswith(
        f"cannot reach the database {proxy.database} at 127.0.0.1:{proxy.port}: "
    ), broken
    assert asks[-1]["workers"] == [broken[0]["worker"]]
    # ... saying how old its check is: the last ask's, or the one before, under way since
    assert 0 <= broken[0]["checked_seconds_ago"] < 15, broken
