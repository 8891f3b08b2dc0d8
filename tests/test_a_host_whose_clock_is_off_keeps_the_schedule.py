"""A beat, a worker or a web whose host clock is off keeps the schedule: ticks, runs' times,
heartbeats and beat's loop are timed by the database's clock (common.database_clock), and beat
and the workers say their clock is off, in their log and in health.

Before, beat decided by its own clock: two minutes fast, it fired every import two minutes early
(and counted the ticks in between missed); two minutes slow, it fired them two minutes late,
and health said beat was down. A worker whose clock was fast stamped its runs' start and end
minutes after they were queued, in the future. An import created through a web whose clock
was slow had its first tick already past: beat counted it missed, and the import late.

The clocks are moved with libfaketime (`make faketime`), in the beat's, the worker's or the
web's process only, as a host whose clock is off would be.
"""

from __future__ import annotations

import glob
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import pytest
import requests
from django.utils import timezone
from knox.models import AuthToken

from project.devservices import free_port
from schedules import dashboard, services
from schedules.api import health
from schedules.models import ImportRun, ScheduledImport
from tasks import locks
from tests.api_support import API, client_for
from tests.conftest import answers, wait_for
from tests.factories import PRODUCTS_CSV, make_import
from tests.reliability import FAST, wait_for_the_end

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]

SOURCE = "http://127.0.0.1:9/p.csv"  # never fetched: no worker runs in the beat cases
EVERY = 10  # seconds: ticks on multiples of it since the epoch (schedules.ticks)
# The first tick is at least this far off: a beat two minutes fast fires it at its next loop
# (1 s), well before it; one two minutes slow, long after the wait for it ends.
LEAD = 4


def off_by(seconds: int) -> dict[str, str]:
    """The environment of a process whose clock is `seconds` off (negative: behind)."""
    library = glob.glob("/usr/lib/*/faketime/libfaketime.so.1")
    assert library, "libfaketime is missing: run `make faketime`"
    # The monotonic clock moves by as much (libfaketime's sleeps fail otherwise): only
    # differences of it are ever taken, so it stays right.
    return {"LD_PRELOAD": library[0], "FAKETIME": f"{seconds:+d}s"}


def import_due_in_a_few_seconds(owner) -> ScheduledImport:
    """An import on a 10-second interval whose first tick is LEAD to 9 s away."""
    wait_for(lambda: 1 <= time.time() % EVERY <= EVERY - LEAD, EVERY, interval=0.2)
    return make_import(owner, SOURCE, interval_seconds=EVERY)


@pytest.fixture
def ops(django_user_model):
    return django_user_model.objects.create_user("ops", "ops@x.org", "x", is_staff=True)


@pytest.mark.parametrize("seconds", [120, -120], ids=["fast", "slow"])
def test_a_beat_whose_clock_is_off_fires_the_tick_on_time(alice, ops, processes, seconds):
    # Given a beat whose host clock is two minutes off, looping
    processes.start("beat", **off_by(seconds))
    health = client_for(ops)
    wait_for(
        lambda: health.get(f"{API}/health").json()["checks"]["beat"]["last_tick"],
        30,
        what="beat's first loop\n" + processes.logs(),
    )

    # When an import's first tick comes
    imp = import_due_in_a_few_seconds(alice)
    due = imp.next_run_at
    run = wait_for(
        lambda: ImportRun.objects.filter(scheduled_import=imp).first(),
        (due - imp.created_at).total_seconds() + 15,
        interval=0.1,
        what="the first run\n" + processes.logs(),
    )
    # (this process's clock is the database's: both are this host's)
    appeared = time.time()

    # Then its run came at its tick, not two minutes before or after it, as a scheduled one
    assert due.timestamp() - 0.5 <= appeared <= due.timestamp() + 5
    assert (run.scheduled_for, run.trigger) == (due, "schedule")
    imp.refresh_from_db()
    assert (imp.missed_ticks, imp.late_since) == (0, None)
    # ... health finds beat alive, and says its clock is off
    beat = health.get(f"{API}/health").json()["checks"]["beat"]
    assert beat["alive"] is True and beat["ok"] is False
    assert abs(beat["clock_offset_seconds"] + seconds) < 5
    way = "ahead of" if seconds > 0 else "behind"
    assert f"beat's host clock is 120 s {way} the database's" in beat["message"]
    # ... and so does beat's log, once
    log = processes.log_of("beat")
    assert log.count(f"this host's clock is 120 s {way} the database's") == 1


def test_a_worker_whose_clock_is_fast_stamps_its_runs_with_the_databases_time(
    alice, ops, csv_server, processes
):
    # Given a worker whose host clock is five minutes fast
    processes.start("worker", **off_by(300))
    imp = make_import(alice, csv_server.serve("/p.csv", PRODUCTS_CSV))

    # When it runs an import triggered now
    run = wait_for_the_end(services.enqueue_run(imp, trigger="api", user=alice), processes)

    # Then the run's times are the database's: it did not start five minutes after it was
    # queued, nor end in the future
    assert run.status == "succeeded"
    assert run.queued_at <= run.started_at <= run.finished_at <= timezone.now()
    assert (run.started_at - run.queued_at).total_seconds() < 30
    imp.refresh_from_db()
    assert imp.last_run_at <= timezone.now()
    # ... and the worker said at its start that its clock is off
    assert "this host's clock is 300 s ahead of the database's" in processes.log_of("worker")
    # ... as health says, naming it at every ask (its answer was lost one ask in two, on the
    # pool's broker connection), and the dashboard, as a warning
    asks = [health.check_workers() for _ in range(10)]
    assert [bool(workers.get("clocks_off")) for workers in asks] == [True] * 10
    workers = asks[-1]
    assert workers["ok"] is False and workers["broken"] == []
    [(name, off)] = [(w["worker"], w["clock_offset_seconds"]) for w in workers["clocks_off"]]
    assert name in workers["workers"] and abs(off + 300) < 5
    assert f"{name}'s host clock is 300 s ahead of the database's" in workers["message"]
    # (the API's answer is that one, which it reuses for HEALTH_WORKERS_MAX_AGE)
    assert client_for(ops).get(f"{API}/health").json()["checks"]["workers"] == workers
    panel = {row["name"]: row for row in dashboard.health_panel()}["workers"]
    assert (panel["state"], panel["text"]) == ("warn", workers["message"])


def test_an_import_created_through_a_web_whose_clock_is_slow_is_not_born_late(
    alice, ops, processes
):
    # Given the web process on a host whose clock is two minutes slow
    port = free_port()
    processes.start("web", PORT=str(port), WEB_CONCURRENCY="1", **off_by(-120))
    base = f"http://127.0.0.1:{port}"
    wait_for(lambda: answers(f"{base}/admin/login/"), 30, what="web\n" + processes.logs())
    _, token = AuthToken.objects.create(user=alice, expiry=None)
    owner = {"Authorization": f"Token {token}"}

    # When alice creates an import that fires every minute
    before = timezone.now()
    created = requests.post(
        f"{base}{API}/imports/",
        json={
            "name": "minutely", "source_url": SOURCE, "dataset": "minutely",
            "key_column": "sku", "schedule_type": "cron", "cron_expression": "* * * * *",
        },
        headers=owner,
        timeout=30,
    )  # fmt: skip

    # Then its first tick is the next minute by the database's clock, not one already past
    # (which beat counted missed, and the import late, at its first loop)
    assert created.status_code == 201, created.text
    imp = ScheduledImport.objects.get(pk=created.json()["id"])
    assert before < imp.next_run_at <= before + timedelta(seconds=61)
    assert created.json()["next_runs"][0] == imp.next_run_at.isoformat().replace("+00:00", "Z")
    # ... and staff read the web's offset in health
    _, ops_token = AuthToken.objects.create(user=ops, expiry=None)
    staff = {"Authorization": f"Token {ops_token}"}
    checks = requests.get(f"{base}{API}/health", headers=staff, timeout=30).json()
    assert abs(checks["checks"]["database"]["web_clock_offset_seconds"] - 120) < 5
    # ... and a run queued a moment ago is in the import's stats: the window ends at the
    # database's now, not two minutes before it
    ImportRun.objects.create(scheduled_import=imp, trigger="api", status="succeeded")
    stats = requests.get(
        f"{base}{API}/imports/{imp.pk}/stats/", {"days": 1}, headers=owner, timeout=30
    ).json()
    assert stats["total"] == 1, stats


def test_the_offset_is_measured_against_the_database():
    from common import database_clock

    # The suite's database runs on this host: its clock is this one.
    assert abs(database_clock.measure()) < 1
    assert database_clock.off_by(4.9) == ""
    assert database_clock.off_by(-90.4) == "90 s ahead of"
    assert database_clock.off_by(90.4) == "90 s behind"


@contextmanager
def queued_behind_another_run(owner, csv_server, timeout_seconds: int) -> Iterator[ImportRun]:
    """A run of an import whose runs queue behind one another (for up to `timeout_seconds`),
    queued while another run holds the import's lease, which is freed on leaving."""
    imp = make_import(
        owner,
        csv_server.serve("/p.csv", PRODUCTS_CSV),
        overlap="queue",
        timeout_seconds=timeout_seconds,
    )
    holder = locks.run_lease(imp.pk, run_id=999_999)
    assert holder.acquire()
    try:
        yield services.enqueue_run(imp, trigger="api", user=owner)
    finally:
        holder.release()


def test_a_worker_whose_clock_is_fast_lets_a_queued_run_wait_its_imports_timeout(
    alice, csv_server, processes
):
    # Given a worker whose host clock is five minutes fast
    processes.start("worker", **FAST, **off_by(300))

    # When a run is queued behind another run of its import for up to a minute, the worker
    # looking at the lease again and again
    with queued_behind_another_run(alice, csv_server, timeout_seconds=60) as run:
        wait_for(
            lambda: processes.log_of("worker").count(f"run waits run={run.pk}") >= 3,
            30,
            what="the run to wait\n" + processes.logs(),
        )
        # Then it waits for the lease, not skipped as if it had waited five minutes already
        run.refresh_from_db()
        assert run.status == "queued"
        assert run.error_message.startswith("waiting its turn: run 999999 of this import")
    # ... and runs once the lease is free
    assert wait_for_the_end(run, processes).status == "succeeded"


def test_a_run_a_worker_whose_clock_is_fast_put_off_runs_on_time_on_another(
    alice, csv_server, processes
):
    # Given a run queued behind another run of its import
    # When a worker whose host clock is five minutes fast puts it off for 10 s (a message with
    # an ETA, as a retry's backoff is), and stops at once (warm), handing the message back,
    # which another worker takes once the lease is free
    fast = processes.start("worker", WORKER_NAME="fast", RUN_LEASE_SECONDS="30", **off_by(300))
    with queued_behind_another_run(alice, csv_server, timeout_seconds=600) as run:
        wait_for(
            lambda: (
                f"run waits run={run.pk} for run 999999; again in 10s" in processes.log_of("worker")
            ),
            30,
            what="the run to be put off\n" + processes.logs(),
        )
        put_off = time.monotonic()
        processes.stop(fast)
    processes.start("worker", WORKER_NAME="right")

    # Then the other worker runs it 10 s after it was put off, not five minutes later
    run = wait_for_the_end(run, processes, timeout=40)
    assert run.status == "succeeded" and run.worker.startswith("right@")
    assert time.monotonic() - put_off < 30
