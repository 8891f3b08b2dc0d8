"""Benchmark: one beat process (the Procfile's line) over 10,000 active imports while their
owners keep editing them, with no edits, one edit a second and ten a second, in turns.

The imports: 1,000 on `* * * * *`, the rest hourly, their minutes spread over the hour (about
1,150 ticks due each minute), each rule written its own way (one crontab row per import, as
a deployment of many users has them; BENCH_EDITS_DISTINCT=0: a few rules shared). No worker
runs: the collector of bench_beat_scale pops every message off the broker as it lands and ends
its run, as a worker would. Editor threads in this process (BENCH_EDITS_EDITORS, 4) change
imports through `schedules.services`, as the API and the admin do, each edit in its own
transaction: a new cron rule (every minute or hourly, written anew), a pause, a resume, a new
import or a deletion. Right after each edit, in its
transaction, it notes what the import's `next_runs` lists: what the owner was told.

Printed per phase (ticks of the phase's minutes): the lateness of each message (from its tick
to its message on the broker: p50, p95, max); the ticks due that fired, and those lost or
dispatched twice, over the imports nobody edited; over the edited ones, the ticks listed at an
edit (and due before the next) that did not fire, and the ticks that fired but no listing
named (an old schedule's, or a paused import's); messages of runs of imports already deleted;
beat's CPU and peak RSS; how often django-celery-beat's change row moved (each move has the
leading beat read its entries again) and how many times beat said it did. Then the cost of one
such read at this size, timed here on the same tables. Timings are printed, never asserted.

Knobs: BENCH_EDITS_IMPORTS (10000), BENCH_EDITS_EVERY_MINUTE (1000), BENCH_EDITS_RATES
("0,1,10" edits a second), BENCH_EDITS_PHASE_MINUTES (2), BENCH_EDITS_MAX_LOOP (5, beat's
production loop interval; the suite's processes use 1).
"""

from __future__ import annotations

import os
import random
import threading
import time
import tracemalloc
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import psutil
import psycopg
import pytest
from django.contrib.auth import get_user_model
from django.db import connections, transaction
from django_celery_beat.models import CrontabSchedule, PeriodicTask, PeriodicTasks

from project.beat import DISPATCH_TASK
from schedules import services
from schedules.models import Dataset, ImportRun, ScheduledImport
from schedules.services import EXECUTE_RUN
from tests.bench.bench_beat_scale import (
    Collector,
    cpu_seconds,
    link_periodic_tasks,
    percentiles,
)
from tests.bench.figures import report

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.processes,
    pytest.mark.timeout(3600),
]

COUNT = int(os.environ.get("BENCH_EDITS_IMPORTS", "10000"))
EVERY_MINUTE = int(os.environ.get("BENCH_EDITS_EVERY_MINUTE", "1000"))
RATES = tuple(float(r) for r in os.environ.get("BENCH_EDITS_RATES", "0,1,10").split(","))
PHASE_MINUTES = int(os.environ.get("BENCH_EDITS_PHASE_MINUTES", "2"))
MAX_LOOP = os.environ.get("BENCH_EDITS_MAX_LOOP", "5")
# The imports edited are drawn from the first CHURNED of each kind; the rest are never touched
# and must each fire every tick due, once.
CHURNED_SHARE = 0.2
EDITORS = int(os.environ.get("BENCH_EDITS_EDITORS", "4"))
BEAT_ENV = {"MAX_RUNNING_PER_OWNER": "0", "BEAT_MAX_LOOP_INTERVAL": MAX_LOOP}
RULES = ("* * * * *", "*/2 * * * *", *(f"{m} * * * *" for m in range(0, 60, 7)))
# One rule written its own way per import (1), as a deployment of many users has them, each its
# own crontab row; or the few shared RULES (0).
DISTINCT = os.environ.get("BENCH_EDITS_DISTINCT", "1") == "1"


def every_minute_rule(n: int) -> str:
    """The `n`th way of writing `* * * * *` (distinct for n < 39,353)."""
    minute, hour, day = n % 59, (n // 59) % 23, 1 + (n // (59 * 23)) % 29
    return f"0-{minute},{minute + 1}-59 0-{hour},{hour + 1}-23 1-{day},{day + 1}-31 * *"


def hourly_rule(n: int) -> str:
    """The `n`th way of writing an hourly rule, at minute n % 60 (distinct for n < 40,020)."""
    hour, day = (n // 60) % 23, 1 + (n // (60 * 23)) % 29
    return f"{n % 60} 0-{hour},{hour + 1}-23 1-{day},{day + 1}-31 * *"


def make_imports(owner, dataset) -> list[ScheduledImport]:
    """COUNT imports with their beat entries, in bulk, as the services would have saved them."""
    now = datetime.now(UTC)
    rules = [
        (every_minute_rule(i) if DISTINCT else "* * * * *")
        if i < EVERY_MINUTE
        else (hourly_rule(i) if DISTINCT else f"{i % 60} * * * *")
        for i in range(COUNT)
    ]
    crontabs = {}
    for rule in set(rules):
        minute, hour, dom, month, dow = rule.split()
        crontabs[rule] = CrontabSchedule(
            minute=minute, hour=hour, day_of_month=dom, month_of_year=month, day_of_week=dow,
            timezone="UTC",
        )  # fmt: skip
    CrontabSchedule.objects.bulk_create(crontabs.values(), batch_size=2000)
    imports = [
        ScheduledImport(
            owner=owner, name=f"import-{i}", source_url="http://127.0.0.1/p.csv",
            dataset=dataset, key_column="sku", schedule_type="cron", cron_expression=rule,
            schedule_changed_at=now - timedelta(minutes=1),
        )
        for i, rule in enumerate(rules)
    ]  # fmt: skip
    for imp in imports:
        imp.next_run_at = imp.schedule.next_after(now)
    imports = ScheduledImport.objects.bulk_create(imports, batch_size=2000)
    tasks = PeriodicTask.objects.bulk_create(
        [
            PeriodicTask(
                name=imp.periodic_task_name(), task=DISPATCH_TASK,
                crontab=crontabs[imp.cron_expression], args=f"[{imp.pk}]", enabled=True,
                description=imp.name,
            )
            for imp in imports
        ],
        batch_size=2000,
    )  # fmt: skip
    link_periodic_tasks(imports, tasks)
    return imports


@dataclass
class Edit:
    at: float  # time.time() at its commit
    import_id: int
    kind: str
    listed: list[datetime]  # next_runs right after it, in its transaction (empty: paused)
    schedule: object = None  # the import's schedule after it, for the ticks past those listed


@dataclass
class Editor:
    """Edits imports at `rate` a second from a thread of its own (its own database session)."""

    owner: object
    dataset: object
    pool: list[int]
    rate: float = 0.0
    edits: list[Edit] = field(default_factory=list)
    deleted: dict[int, float] = field(default_factory=dict)
    bumps: int = 0  # edits that moved django-celery-beat's change row
    errors: list[str] = field(default_factory=list)
    durations: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.stop = threading.Event()
        self.random = random.Random(7)
        self.paused: set[int] = set()
        self.busy: set[int] = set()  # imports an edit is at: one edit of an import at a time
        self.created = 0
        self.fresh = 0
        self.lock = threading.Lock()
        # An edit takes about 0.1 s here: several editors keep up with ten a second.
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(EDITORS)]

    def start(self) -> Editor:
        for thread in self.threads:
            thread.start()
        return self

    def close(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(30)

    def _run(self) -> None:
        try:
            next_at = time.monotonic()
            while not self.stop.is_set():
                if self.rate <= 0:
                    time.sleep(0.2)
                    next_at = time.monotonic()
                    continue
                next_at += EDITORS / self.rate
                time.sleep(max(0.0, next_at - time.monotonic()))
                try:
                    self._one_edit()
                except Exception as error:  # said in the figures, the bench goes on
                    self.errors.append(f"{type(error).__name__}: {error}")
        finally:
            connections.close_all()

    def new_rule(self, other_than: str) -> str:
        """A rule the user writes: one of RULES, or (DISTINCT) one no import had yet."""
        with self.lock:
            if not DISTINCT:
                return self.random.choice([r for r in RULES if r != other_than])
            self.fresh += 1
            n = 39_352 - self.fresh
            return every_minute_rule(n) if self.random.random() < 0.3 else hourly_rule(n)

    def _choose(self) -> tuple[str, int | None]:
        with self.lock:
            roll = self.random.random()
            kind = (
                "reschedule" if roll < 0.4 else "pause" if roll < 0.6 else "resume"
                if roll < 0.8 else "create" if roll < 0.9 else "delete"
            )  # fmt: skip
            if kind == "create":
                self.created += 1
                return kind, None
            if kind == "resume" and not self.paused - self.busy:
                kind = "pause"
            ids = sorted(self.paused - self.busy) if kind == "resume" else self.pool
            pk = self.random.choice(ids)
            while pk in self.busy:
                pk = self.random.choice(ids)
            self.busy.add(pk)
            if kind == "pause":
                self.paused.add(pk)
            elif kind in ("resume", "delete"):
                self.paused.discard(pk)
            if kind == "delete":
                self.pool.remove(pk)
            return kind, pk

    def _one_edit(self) -> None:
        kind, pk = self._choose()
        before = PeriodicTasks.last_change()
        started = time.monotonic()
        try:
            with transaction.atomic():
                if kind == "create":
                    imp = services.create_import(
                        self.owner, dataset=self.dataset.name, name=f"new-{uuid.uuid4().hex[:12]}",
                        source_url="http://127.0.0.1/p.csv", key_column="sku",
                        schedule_type="cron", cron_expression=self.new_rule(""),
                    )  # fmt: skip
                else:
                    imp = ScheduledImport.objects.get(pk=pk)
                    if kind == "reschedule":
                        imp = services.update_import(
                            imp, cron_expression=self.new_rule(imp.cron_expression)
                        )
                    elif kind == "pause":
                        imp = services.pause_import(imp)
                    elif kind == "resume":
                        imp = services.resume_import(imp)
                    else:
                        services.delete_import(imp)
                listed = imp.next_runs(5) if kind != "delete" and imp.next_run_at else []
        finally:
            with self.lock:
                self.busy.discard(pk)
        with self.lock:
            if kind == "create":
                self.pool.append(imp.pk)
            self.durations.append(time.monotonic() - started)
            if kind == "delete":
                self.deleted[pk] = time.time()
            self.edits.append(Edit(time.time(), imp.pk if kind != "delete" else pk, kind, listed,
                                   imp.schedule))  # fmt: skip
            if PeriodicTasks.last_change() != before:
                self.bumps += 1


class TakingCollector(Collector):
    """bench_beat_scale's collector, whose batch that ends the runs it took may meet an edit's
    locks (a pause skips the import's waiting runs, a deletion deletes them) and be chosen as a
    deadlock's victim: its batch is tried again (real workers end one run at a time)."""

    def _run(self) -> None:
        try:
            with psycopg.connect(**self.database, autocommit=True) as database:
                while not self.stop.is_set():
                    try:
                        self._collect(database)
                    except psycopg.errors.DeadlockDetected:
                        self.deadlocks += 1
        except BaseException as error:
            self.error = error
            raise

    deadlocks = 0


def minute_of(at: float) -> datetime:
    return datetime.fromtimestamp(at, tz=UTC).replace(second=0, microsecond=0)


def bench_beat_under_edits(processes) -> None:
    owner = get_user_model().objects.create_user("editbench", password="x")
    dataset = Dataset.objects.create(owner=owner, name="bench")
    imports = make_imports(owner, dataset)
    every_minute = [imp.pk for imp in imports[:EVERY_MINUTE]]
    hourly = [imp.pk for imp in imports[EVERY_MINUTE:]]
    churned = (
        every_minute[: int(len(every_minute) * CHURNED_SHARE)]
        + hourly[: int(len(hourly) * CHURNED_SHARE)]
    )
    untouched = set(every_minute + hourly) - set(churned)
    rules = {imp.pk: imp.schedule for imp in imports}

    # Start early in a minute: the first phase begins at the next boundary.
    while datetime.now(UTC).second > 40:
        time.sleep(0.5)
    collector = TakingCollector().start()
    beat = processes.start("beat", **BEAT_ENV)
    collector.watch(beat.pid)
    beat_process = psutil.Process(beat.pid)
    editor = Editor(owner, dataset, list(churned)).start()
    start = minute_of(time.time()) + timedelta(minutes=1)
    while datetime.now(UTC) < start:
        time.sleep(0.2)
    phases = []
    try:
        for rate in RATES:
            began, cpu0 = datetime.now(UTC), cpu_seconds(beat_process)
            bumps0, edits0 = editor.bumps, len(editor.edits)
            said0 = jobs_said(processes.log_of("beat"))
            collector.data.peak_rss = 0
            editor.rate = rate
            phase_start = minute_of(time.time())
            end = phase_start + timedelta(minutes=PHASE_MINUTES)
            while datetime.now(UTC) < end:
                time.sleep(0.2)
            editor.rate = 0
            phases.append(
                {
                    "rate": rate, "start": phase_start, "end": end,
                    "cpu": (cpu_seconds(beat_process) - cpu0)
                    / (datetime.now(UTC) - began).total_seconds(),
                    "rss": collector.data.peak_rss, "bumps": editor.bumps - bumps0,
                    "edits": len(editor.edits) - edits0,
                    "said": jobs_said(processes.log_of("beat")) - said0,
                }
            )  # fmt: skip
        # The last phase's last ticks drain (a message lands within seconds of its tick).
        time.sleep(20)
    finally:
        editor.close()
        data = collector.close()
    processes.stop(beat)

    received = [(at, args[0]) for at, task, args in data.received if task == EXECUTE_RUN]
    runs = {
        pk: (imp_id, tick, trigger)
        for pk, imp_id, tick, trigger in ImportRun.objects.filter(
            scheduled_for__gte=start
        ).values_list("pk", "scheduled_import_id", "scheduled_for", "trigger")
    }
    messages_per_run: dict[int, int] = {}
    for _at, pk in received:
        messages_per_run[pk] = messages_per_run.get(pk, 0) + 1
    sent_ids = {pk for _at, pk in received}
    still_there = set(ImportRun.objects.filter(pk__in=sent_ids).values_list("pk", flat=True))
    deleted_runs_sent = len(sent_ids - still_there)
    edits_of: dict[int, list[Edit]] = {}
    for edit in editor.edits:
        edits_of.setdefault(edit.import_id, []).append(edit)
    fired_of: dict[int, set[datetime]] = {}
    for imp_id, tick, trigger in runs.values():
        if trigger in (ImportRun.Trigger.SCHEDULE, ImportRun.Trigger.CATCHUP):
            fired_of.setdefault(imp_id, set()).add(tick)

    for phase in phases:
        begin, end = phase["start"], phase["end"]
        lags = [
            at - runs[pk][1].timestamp()
            for at, pk in received
            if pk in runs and begin <= runs[pk][1] < end
        ]
        minutes = [begin + timedelta(minutes=m) for m in range(PHASE_MINUTES)]
        due = lost = 0
        for pk in untouched:
            for minute in minutes:
                if rules[pk].next_after(minute - timedelta(seconds=1)) == minute:
                    due += 1
                    lost += minute not in fired_of.get(pk, set())
        twice = sum(
            n - 1
            for pk, n in messages_per_run.items()
            if n > 1 and pk in runs and begin <= runs[pk][1] < end
        )
        not_fired, not_listed, checked, paused_after = listed_against_fired(
            edits_of, fired_of, begin, end
        )
        report(
            f"beat under {phase['rate']:g} edits/s, {COUNT} imports",
            edits=phase["edits"],
            edit_ms_p50=f"{1000 * median(editor.durations):.0f}",
            messages=len(lags),
            lateness=percentiles(lags).replace(" ", ","),
            untouched_due=due,
            untouched_lost=lost,
            dispatched_twice=twice,
            edited_ticks_checked=checked,
            listed_not_fired=not_fired,
            fired_not_listed=not_listed,
            listed_then_paused_within_10s=paused_after,
            change_row_moves=phase["bumps"],
            beat_said_jobs_changed=phase["said"],
            beat_cpu_percent=f"{100 * phase['cpu']:.0f}",
            beat_peak_rss_mb=f"{phase['rss'] / 2**20:.0f}",
        )
    report(
        "beat under edits, all phases",
        messages_of_runs_deleted_with_their_import=deleted_runs_sent,
        deletions=len(editor.deleted),
        edit_errors=len(editor.errors),
        collector_deadlocks_retried=collector.deadlocks,
        # (Once: at 10,000 rules of their own, the library's read took minutes here.)
        one_read_of_beats_entries=reload_cost_ms(),
        first_errors=" | ".join(editor.errors[:3]) or "-",
        listed_not_fired_examples=" | ".join(MISSING_EXAMPLES) or "-",
    )


def median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2] if values else 0.0


# Edited imports whose listed ticks did not fire, said with their edits (the figures' line).
MISSING_EXAMPLES: list[str] = []


def listed_against_fired(
    edits_of: dict[int, list[Edit]],
    fired_of: dict[int, set[datetime]],
    begin: datetime,
    end: datetime,
) -> tuple[int, int, int, int]:
    """Over the edited imports not deleted, the ticks in [begin, end): listed at an edit (and
    due before the next edit) but not fired; fired but listed by no edit while it held; those
    checked; and, apart, the listed ticks not fired that a pause came within 10 s after (beat
    had not got to them: a pause drops such a tick, sync_periodic_task). Ticks before an
    import's first listing are left out (no listing of them was taken)."""
    not_fired = not_listed = checked = paused_after = 0
    for edits in edits_of.values():
        if edits[-1].kind == "delete":
            continue  # its runs went with it
        expected: set[datetime] = set()
        dropped: set[datetime] = set()
        for edit, after in zip(edits, [*edits[1:], None], strict=True):
            until = datetime.fromtimestamp(after.at, tz=UTC) if after else end
            ticks = set(edit.listed)
            if edit.listed:  # the ticks after the five listed, as the same rule gives them
                ticks |= set(edit.schedule.ticks_between(edit.listed[-1], until, 10_000))
            ticks = {tick for tick in ticks if tick < until}
            expected |= ticks
            if after is not None and after.kind == "pause":
                dropped |= {tick for tick in ticks if until - tick < timedelta(seconds=10)}
        # From the first edit, or the tick it kept if earlier (a listing's first tick may lie
        # hours after an every-minute tick the next edit lists and beat fires).
        first_edit = edits[0]
        first = min([*first_edit.listed[:1], datetime.fromtimestamp(first_edit.at, tz=UTC)])
        window = {t for t in expected if begin <= t < end}
        fired = {t for t in fired_of.get(edits[0].import_id, set()) if begin <= t < end}
        fired = {t for t in fired if t >= first}
        checked += len(window)
        missing = window - fired
        if missing - dropped and len(MISSING_EXAMPLES) < 4:
            MISSING_EXAMPLES.append(
                f"import={edits[0].import_id} missing={sorted(missing - dropped)} edits="
                + ";".join(
                    f"{e.kind}@{datetime.fromtimestamp(e.at, tz=UTC):%H:%M:%S.%f}"
                    f"->{[f'{t:%H:%M:%S}' for t in e.listed[:2]]}"
                    for e in edits
                )
                + f" fired={[f'{t:%H:%M}' for t in sorted(fired_of.get(edits[0].import_id, ()))]}"
            )
        paused_after += len(missing & dropped)
        not_fired += len(missing - dropped)
        not_listed += len(fired - expected)
    return not_fired, not_listed, checked, paused_after


def jobs_said(log: str) -> int:
    """Beat's lines of a job it runs anew or no longer (project.beat: one per job changed,
    where django-celery-beat said "Schedule changed." at every read)."""
    return log.count("beat runs its job") + log.count("beat no longer runs its job")


def reload_cost_ms() -> str:
    """One read of beat's entries as the leading beat makes at each move of the change row:
    time and memory allocated, on the bench's tables."""
    from project.beat import ImportScheduler
    from project.celery import app

    scheduler = ImportScheduler.__new__(ImportScheduler)
    scheduler.app = app
    scheduler.Model = PeriodicTask
    scheduler.Entry = ImportScheduler.Entry
    scheduler.jobs = None  # (what the constructor sets: the jobs beat last said)
    tracemalloc.start()
    started = time.perf_counter()
    entries = scheduler.all_as_schedule()
    took = time.perf_counter() - started
    _current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return f"{1000 * took:.1f}ms/{len(entries)}entries/{peak / 1024:.0f}KiB"
