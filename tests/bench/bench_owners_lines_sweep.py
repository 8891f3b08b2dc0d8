"""Benchmark: what one maintenance pass costs with 100,000 runs parked in their owners' lines.

`BENCH_LINES_SHAPES` (default `20x5000,1000x100`: owners x parked runs each, a comma-separated
list, one pass each) builds that many parked runs, as beat lines them up (tasks.fairness,
common.owner_lines), every owner at the cap of 2 (two runs running). Then three passes of the
sweep's look at the lines (`fairness.look_after_lines`) and of reconciliation's search for lost
messages (`reconcile.recover_lost_messages`), as maintenance runs them each minute. Printed:
each pass's time, the run table's heap and index sizes before and after, and how many run rows
the passes wrote. Then, the worst case of reconciliation: every parked run's heartbeat over at
once (beat parked them in one batch); three passes, and how many of them it set ahead, with
one lost message of another run behind them, which the first pass must send again.

The sweep used to set every parked run's heartbeat ahead at each pass (1e22888): run this file
in a tree of that commit for the old figures. Timings are printed, never asserted.
"""

from __future__ import annotations

import os
import time
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.db import connection

from common import database_clock, owner_lines
from common.redis_client import client
from schedules import reconcile, services
from schedules.models import Dataset, ImportRun, ScheduledImport
from tasks import fairness

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(3600)]

SHAPES = [
    tuple(int(n) for n in shape.split("x"))
    for shape in os.environ.get("BENCH_LINES_SHAPES", "20x5000,1000x100").split(",")
    if shape
]
TABLE = ImportRun._meta.db_table


def parked_runs(owners: int, per_owner: int) -> list[int]:
    """`owners` owners at their cap of 2, `per_owner` runs of each parked; the parked ids."""
    User = get_user_model()
    users = User.objects.bulk_create(
        [User(username=f"owner{n}", email=f"owner{n}@example.com") for n in range(owners)]
    )
    datasets = Dataset.objects.bulk_create([Dataset(owner=user, name="d") for user in users])

    def imports(name: str) -> list[ScheduledImport]:
        return ScheduledImport.objects.bulk_create(
            [
                ScheduledImport(
                    owner=user, name=name, dataset=dataset, key_column="sku",
                    source_url="http://127.0.0.1:1/x", schedule_type="interval",
                    interval_seconds=86400,
                )
                for user, dataset in zip(users, datasets, strict=True)
            ]
        )  # fmt: skip

    waiting = imports("parked")
    running = imports("running a") + imports("running b")
    ImportRun.objects.bulk_create(
        [ImportRun(scheduled_import=imp, trigger="manual", status="running") for imp in running]
    )
    note = (
        f"{services.WAITING_ITS_TURN} more than 2 runs of this owner due at once, at most 2 at "
        "once (MAX_RUNNING_PER_OWNER)"
    )
    ahead = database_clock.now() + timedelta(seconds=owner_lines.alive_seconds())
    runs = ImportRun.objects.bulk_create(
        [
            ImportRun(
                scheduled_import=imp, trigger="manual", error_message=note, heartbeat_at=ahead
            )
            for imp in waiting
            for _ in range(per_owner)
        ],
        batch_size=10_000,
    )
    of_owner: dict[int, list[int]] = {}
    for run in runs:
        of_owner.setdefault(run.scheduled_import.owner_id, []).append(run.pk)
    owner_ids = list(of_owner)
    for start in range(0, len(owner_ids), 100):
        owner_lines.join({owner: of_owner[owner] for owner in owner_ids[start : start + 100]})
    return [run.pk for run in runs]


def sizes() -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT pg_relation_size('{TABLE}'), pg_indexes_size('{TABLE}')")
        heap, indexes = cursor.fetchone()
    return f"heap {heap / 2**20:.1f} MB, indexes {indexes / 2**20:.1f} MB"


def row_versions() -> dict[int, str]:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT id, ctid::text FROM {TABLE}")
        return dict(cursor.fetchall())


def passes(what: str, count: int = 3) -> None:
    grace = timedelta(seconds=60)
    versions = row_versions()
    before = sizes()
    times = []
    for _pass in range(count):
        started = time.monotonic()
        fairness.look_after_lines()
        swept = time.monotonic() - started
        started = time.monotonic()
        resent, _missed = reconcile.recover_lost_messages(database_clock.now(), grace)
        times.append(f"sweep {swept:.2f} s + reconcile {time.monotonic() - started:.2f} s"
                     f" (resent {resent})")  # fmt: skip
    after = row_versions()
    written = sum(1 for pk, version in after.items() if versions.get(pk) != version)
    print(f"  {what}: passes: {'; '.join(times)}")
    print(f"  {what}: run table {before} -> {sizes()}; run rows written: {written}")


@pytest.mark.parametrize("owners,per_owner", SHAPES)
def bench_owners_lines_sweep(settings, monkeypatch, owners, per_owner):
    settings.MAX_RUNNING_PER_OWNER = 2
    monkeypatch.setattr(services, "send_runs", lambda runs, **_: None)
    started = time.monotonic()
    ids = parked_runs(owners, per_owner)
    print(f"\n{owners} owners x {per_owner} parked runs ({len(ids)}), built in "
          f"{time.monotonic() - started:.0f} s")  # fmt: skip
    try:
        passes("heartbeats ahead")
        # Worst case: every heartbeat over at once, and one lost message of another run.
        hour_ago = database_clock.now() - timedelta(hours=1)
        ImportRun.objects.filter(pk__in=ids).update(heartbeat_at=hour_ago)
        lost = ImportRun.objects.create(
            scheduled_import=ScheduledImport.objects.filter(name="parked").last(),
            trigger="manual",
        )
        ImportRun.objects.filter(pk=lost.pk).update(queued_at=hour_ago, heartbeat_at=hour_ago)
        passes("every heartbeat over")
        lost.refresh_from_db()
        still_over = ImportRun.objects.filter(pk__in=ids, heartbeat_at__lt=database_clock.now())
        print(f"  lost message sent again: {lost.heartbeat_at > hour_ago}; parked runs still "
              f"over: {still_over.count()} of {len(ids)}")  # fmt: skip
    finally:
        store = client()
        for key in store.scan_iter("importbeat:owner:*"):
            store.delete(key)
        store.delete(owner_lines.LINES)
