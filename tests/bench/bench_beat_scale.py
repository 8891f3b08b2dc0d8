"""Benchmark: beat alone with 10,000 and 1,000 imports on `* * * * *`, against vanilla
django-celery-beat with the same schedules, in the same run.

Run with `make bench`. No worker runs: a collector pops every message beat puts on the broker
(the Redis list of the default queue) the moment it lands, and records when. Printed per case:
dispatch lag per tick (time from the tick to its message in Redis: p50, p95, max), dispatches
per second while a tick drains, due ticks missed and dispatched twice, beat's CPU and peak RSS,
and the time from the process's start to its first dispatch (the imports' first tick is already
due when beat starts, so this is start-up plus the first batch). For importbeat's beat, a second
beat then joins, and the first is SIGKILLed: the ticks after the kill are dispatched by the
survivor alone (the take-over figure is that tick's lag; beats share the dispatch, so there is
no lease to wait for). Targets (issue 10): every tick dispatched, lag p95 under 5 s at 10,000,
no duplicates, take-over under 5 s. Timings are printed, never asserted.

Vanilla django-celery-beat (`DatabaseScheduler` over the same `PeriodicTask` rows) runs for
about one minute per case as the reference. Its messages carry no tick, so its lag is counted
from the newest minute boundary before each message: a lower bound.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import statistics
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import psutil
import psycopg
import pytest
import redis
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection
from django_celery_beat.models import CrontabSchedule, PeriodicTask, PeriodicTasks

from project.beat import DISPATCH_TASK
from schedules.models import Dataset, ImportRun, ScheduledImport
from schedules.services import EXECUTE_RUN
from tests.bench.figures import percentile, report

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.processes,
    pytest.mark.timeout(1800),
]

QUEUE = "celery"
# `BENCH_BEAT_COUNTS=10000 make bench` measures one size only.
COUNTS = tuple(int(n) for n in os.environ.get("BENCH_BEAT_COUNTS", "10000,1000").split(","))
DISTINCT_COUNTS = tuple(
    int(n) for n in os.environ.get("BENCH_BEAT_DISTINCT_COUNTS", "10000").split(",") if n
)
# One owner's imports, and no worker to send the next of an owner's line as a run ends: beat
# would line up all but MAX_RUNNING_PER_OWNER of each tick's runs (tasks.fairness), as it
# should, and this bench measures beat's dispatch of all of them.
BEAT_ENV = {"MAX_RUNNING_PER_OWNER": "0"}
VANILLA = (
    "celery -A project beat --loglevel=INFO --pidfile= "
    "-S django_celery_beat.schedulers:DatabaseScheduler"
)


@dataclass
class Collected:
    received: list[tuple[float, str, list]] = field(default_factory=list)  # (at, task, args)
    peak_rss: int = 0


class Collector:
    """Pops every message off the broker queue as it lands; samples beat's memory meanwhile.

    It takes each run as a worker would (its run ends at once): beat skips the tick of an
    import whose earlier run still waits for a worker (schedules.dispatch), and a run nobody
    took would turn every later tick of its import into a skipped one, without a message."""

    def __init__(self, pid: int | None = None) -> None:
        self.redis = redis.Redis.from_url(settings.CELERY_BROKER_URL)
        self.data = Collected()
        self.pid = pid
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.taken: list[int] = []
        self.error: BaseException | None = None
        params = connection.settings_dict
        self.database = {
            "dbname": params["NAME"], "user": params["USER"], "host": params["HOST"],
            "port": params["PORT"] or None,
        }  # fmt: skip

    def start(self) -> Collector:
        self.thread.start()
        return self

    def watch(self, pid: int) -> None:
        self.pid = pid

    def _run(self) -> None:
        try:
            with psycopg.connect(**self.database, autocommit=True) as database:
                self._collect(database)
        except BaseException as error:
            # Said at close(): a collector that died would print a bench of nothing received.
            self.error = error
            raise

    def _collect(self, database: psycopg.Connection) -> None:
        last_sample = last_take = 0.0
        while not self.stop.is_set():
            popped = self.redis.brpop([QUEUE], timeout=0.2)
            now = time.time()
            if popped:
                message = json.loads(popped[1])
                body = json.loads(base64.b64decode(message["body"]))
                self.data.received.append((now, message["headers"]["task"], body[0]))
                if message["headers"]["task"] == EXECUTE_RUN:
                    self.taken.append(body[0][0])
            if self.taken and (len(self.taken) >= 1000 or not popped or now - last_take > 0.5):
                last_take = now
                database.execute(
                    f"UPDATE {ImportRun._meta.db_table} SET status = 'succeeded', "
                    "started_at = now(), finished_at = now() WHERE id = ANY(%s)",
                    [self.taken],
                )
                self.taken = []
            if self.pid and now - last_sample > 0.5:
                last_sample = now
                try:
                    rss = sum(
                        p.memory_info().rss
                        for p in [psutil.Process(self.pid), *psutil.Process(self.pid).children()]
                    )
                    self.data.peak_rss = max(self.data.peak_rss, rss)
                except psutil.Error:
                    pass

    def close(self) -> Collected:
        self.stop.set()
        self.thread.join(5)
        if self.error is not None:
            raise RuntimeError("the collector stopped") from self.error
        return self.data


def distinct_rules(count: int) -> list[str]:
    """`count` cron rules, each written differently and each firing every minute: beat parses
    and keeps one per rule (a deployment of many users has about one rule per import)."""
    rules = [
        f"0-{minute},{minute + 1}-59 0-{hour},{hour + 1}-23 1-{day},{day + 1}-31 * *"
        for minute in range(59)
        for hour in range(23)
        for day in range(30)
    ]
    return rules[:count]


def make_imports(count: int, rules: list[str] | None = None) -> list[int]:
    """`count` every-minute imports with their PeriodicTasks, in bulk (the API makes ~20/s);
    all on `* * * * *`, or on `rules`, one each."""
    owner = get_user_model().objects.create_user(f"bench{count}", password="x")
    dataset = Dataset.objects.create(owner=owner, name="bench")
    now = datetime.now(UTC)
    minute = now.replace(second=0, microsecond=0)
    imports = ScheduledImport.objects.bulk_create(
        [
            ScheduledImport(
                owner=owner, name=f"import-{i}", source_url="http://127.0.0.1/p.csv",
                dataset=dataset, key_column="sku", schedule_type="cron",
                cron_expression=rules[i] if rules else "* * * * *",
                next_run_at=minute, schedule_changed_at=now - timedelta(minutes=1),
            )
            for i in range(count)
        ],
        batch_size=2000,
    )  # fmt: skip
    crontab, _ = CrontabSchedule.objects.get_or_create(
        minute="*", hour="*", day_of_month="*", month_of_year="*", day_of_week="*", timezone="UTC"
    )
    tasks = PeriodicTask.objects.bulk_create(
        [
            PeriodicTask(
                name=f"importbeat:import:{imp.pk}", task=DISPATCH_TASK, crontab=crontab,
                args=f"[{imp.pk}]", enabled=True, description=imp.name,
            )
            for imp in imports
        ],
        batch_size=2000,
    )  # fmt: skip
    link_periodic_tasks(imports, tasks)
    PeriodicTasks.update_changed()
    return [imp.pk for imp in imports]


def link_periodic_tasks(imports: list[ScheduledImport], tasks: list[PeriodicTask]) -> None:
    """Each import's periodic_task set to its PeriodicTask (the same place in `tasks`), in one
    UPDATE: the bulk-created imports' and tasks' link, as sync_periodic_task would leave it."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {ScheduledImport._meta.db_table} AS i SET periodic_task_id = v.task "
            "FROM unnest(%s::bigint[], %s::int[]) AS v(id, task) WHERE i.id = v.id",
            [[imp.pk for imp in imports], [task.pk for task in tasks]],
        )


def wait_for_early_minute() -> None:
    """Start while the current minute's tick is young, so it is due, not missed."""
    while datetime.now(UTC).second > 20:
        time.sleep(0.5)


def percentiles(values: list[float]) -> str:
    if not values:
        return "p50=- p95=- max=-"
    return (
        f"p50={percentile(values, 0.5):.2f}s p95={percentile(values, 0.95):.2f}s"
        f" max={max(values):.2f}s"
    )


def cpu_seconds(process: psutil.Process) -> float:
    try:
        times = process.cpu_times()
        return times.user + times.system
    except psutil.Error:
        return 0.0


def per_tick_lags(received: list[tuple[float, str, list]], since: float) -> dict[datetime, list]:
    """importbeat's messages: run ids -> their ticks in the database -> lag of each message."""
    runs = {r for at, task, args in received if task == "importbeat.execute_run" for r in args[:1]}
    ticks = dict(ImportRun.objects.filter(pk__in=runs).values_list("pk", "scheduled_for"))
    lags: dict[datetime, list[float]] = {}
    for at, task, args in received:
        if task == "importbeat.execute_run" and args[0] in ticks:
            tick = ticks[args[0]]
            lags.setdefault(tick, []).append(at - tick.timestamp())
    return lags


@dataclass
class Case:
    """One beat process over `count` fresh every-minute imports, watched until `end`."""

    beat: object
    started: float
    first_minute: datetime
    end: datetime
    cpu: float
    wall: float
    data: Collected


def run_case(processes, count: int, minutes: float, rules: list[str] | None = None) -> Case:
    ImportRun.objects.all().delete()
    ScheduledImport.objects.all().delete()
    PeriodicTask.objects.filter(task=DISPATCH_TASK).delete()
    make_imports(count, rules)
    wait_for_early_minute()
    collector = Collector().start()
    started = time.time()
    beat = processes.start("beat", **BEAT_ENV)
    collector.watch(beat.pid)
    beat_process = psutil.Process(beat.pid)
    first_minute = datetime.now(UTC).replace(second=0, microsecond=0)
    end = first_minute + timedelta(minutes=minutes)
    while datetime.now(UTC) < end:
        time.sleep(0.5)
    cpu = cpu_seconds(beat_process)
    return Case(beat, started, first_minute, end, cpu, time.time() - started, collector.close())


def bench_importbeat_beat(processes) -> None:
    for count in COUNTS:
        beat = measure_beat(processes, count, f"{count} imports")
        # The take-over at the largest size, 10,000 by default: with only smaller ones
        # (BENCH_BEAT_COUNTS=100), it was never run.
        if count == max(COUNTS):
            take_over(processes, beat, count)
        processes.stop(beat)


def bench_importbeat_beat_distinct_rules(processes) -> None:
    """As above, each import on a rule of its own (the beat entries' crontab stays `*`: beat
    reads the import's own rule)."""
    for count in DISTINCT_COUNTS:
        processes.stop(measure_beat(processes, count, f"{count} imports, one rule each",
                                    distinct_rules(count)))  # fmt: skip


def measure_beat(processes, count: int, title: str, rules: list[str] | None = None):
    """Beat over `count` fresh imports: the tick due at start, then two full minutes of ticks.
    Prints its figures; the beat is left running."""
    case = run_case(processes, count, minutes=2 + 50 / 60, rules=rules)
    beat, started, first_minute = case.beat, case.started, case.first_minute
    cpu, wall, data = case.cpu, case.wall, case.data

    lags = per_tick_lags(data.received, started)
    first_at = min((at for at, _t, _a in data.received), default=float("nan"))
    steady = {tick: lag for tick, lag in lags.items() if tick > first_minute}
    steady_lags = [lag for tick_lags in steady.values() for lag in tick_lags]
    due = count * len(steady)
    dispatched = {
        (run.scheduled_import_id, run.scheduled_for)
        for run in ImportRun.objects.filter(scheduled_for__gt=first_minute)
    }
    sent_ids = [a[0] for _at, task, a in data.received if task == "importbeat.execute_run"]
    rates = []
    for tick_lags in steady.values():
        spread = max(tick_lags) - min(tick_lags)
        rates.append(len(tick_lags) / spread if spread > 0 else float("inf"))
    report(
        f"importbeat beat, {title}",
        ticks=len(steady),
        due=due,
        dispatched=len(dispatched),
        missed=due - len(dispatched),
        duplicate_messages=len(sent_ids) - len(set(sent_ids)),
        lag=percentiles(steady_lags).replace(" ", ","),
        dispatch_per_s=f"{statistics.median(rates):.0f}" if rates else "-",
        start_to_first_dispatch_s=f"{first_at - started:.2f}",
        first_tick_drained_s=f"{max(lags.get(first_minute, [0])):.2f}",
        cpu_percent=f"{100 * cpu / wall:.0f}",
        peak_rss_mb=f"{data.peak_rss / 2**20:.0f}",
    )
    return beat


def take_over(processes, first_beat, count: int) -> None:
    """A second beat shares the next tick; then the first is SIGKILLed and the second carries on."""
    collector = Collector().start()
    second = processes.start("beat", **BEAT_ENV)
    # Let both beats dispatch one tick together.
    next_minute = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)
    while datetime.now(UTC) < next_minute + timedelta(seconds=20):
        time.sleep(0.5)
    # The first beat dies a second before the next tick: the survivor must dispatch it alone.
    kill_minute = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)
    while datetime.now(UTC) < kill_minute - timedelta(seconds=1):
        time.sleep(0.05)
    processes.stop(first_beat, signal.SIGKILL)
    killed_at = time.time()
    while datetime.now(UTC) < kill_minute + timedelta(seconds=20):
        time.sleep(0.5)
    data = collector.close()
    lags = per_tick_lags(data.received, killed_at)
    shared = lags.get(next_minute, [])
    after_kill = lags.get(kill_minute, [])
    shared_runs = ImportRun.objects.filter(scheduled_for=next_minute)
    firsts = [at for at, _t, _a in data.received if at > killed_at]
    report(
        f"importbeat take-over, {count} imports",
        shared_tick_dispatched=len(shared),
        shared_tick_duplicate_runs=shared_runs.count()
        - shared_runs.values("scheduled_import").distinct().count(),
        tick_after_kill_dispatched=len(after_kill),
        tick_after_kill_lag=percentiles(after_kill).replace(" ", ","),
        # From the later of the kill and the tick to the survivor's first message.
        take_over_s=(
            f"{min(firsts) - max(killed_at, kill_minute.timestamp()):.2f}" if firsts else "-"
        ),
    )
    processes.stop(second)


def bench_vanilla_django_celery_beat(processes, monkeypatch) -> None:
    from tests import conftest

    real = conftest.procfile_command
    monkeypatch.setattr(
        conftest, "procfile_command", lambda name: VANILLA if name == "beat" else real(name)
    )
    for count in COUNTS:
        case = run_case(processes, count, minutes=1 + 50 / 60)
        started, first_minute, end = case.started, case.first_minute, case.end
        cpu, wall, data = case.cpu, case.wall, case.data
        processes.stop(case.beat)
        sent = [(at, args) for at, task, args in data.received if task == DISPATCH_TASK]
        # Ticks due while it ran: the minute boundaries from start to end, for every import.
        boundaries = int((end - first_minute).total_seconds() // 60) + 1
        lags = [at - (at // 60 * 60) for at, _args in sent]
        per_import: dict[int, int] = {}
        for _at, args in sent:
            per_import[args[0]] = per_import.get(args[0], 0) + 1
        report(
            f"vanilla django-celery-beat, {count} imports",
            due=count * boundaries,
            dispatched=len(sent),
            missed=count * boundaries - len(sent),
            dispatched_twice_in_a_minute=sum(max(0, n - boundaries) for n in per_import.values()),
            lag_lower_bound=percentiles(lags).replace(" ", ","),
            dispatch_per_s=f"{len(sent) / max(wall, 1):.1f}",
            start_to_first_dispatch_s=(
                f"{min(at for at, _a in sent) - started:.2f}" if sent else "none"
            ),
            cpu_percent=f"{100 * cpu / wall:.0f}",
            peak_rss_mb=f"{data.peak_rss / 2**20:.0f}",
        )
