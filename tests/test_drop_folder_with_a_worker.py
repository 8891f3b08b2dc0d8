"""A drop folder end to end with real processes: beat dispatches an interval import of a glob,
a worker (Procfile) imports the newest file and files it in processed/, then the next one; the
check before save reads the folder and a compressed file through the worker (issue 14)."""

from __future__ import annotations

import time

import pytest

from schedules import services
from schedules.models import ImportRun, Record
from tests.api_support import API, client_for
from tests.conftest import wait_for
from tests.drop_support import gzipped, put
from tests.factories import PRODUCTS_CSV, make_import

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]


def succeeded(imp) -> list[ImportRun]:
    return list(imp.runs.filter(status="succeeded").order_by("pk"))


def test_beat_and_a_worker_import_each_delivered_file_once(alice, drop, processes):
    put(drop / "products_1.csv", PRODUCTS_CSV)
    imp = make_import(alice, f"file://{drop}/products_*.csv", move_processed=True)
    services.pause_import(imp)  # until the first file's run is seen; then one more is sent
    processes.start("worker", IMPORT_DROP_DIRS=str(drop.parent))
    processes.start("beat")
    api = client_for(alice)

    # The check before save, on the worker: a drop folder's file, then a compressed one
    check = {"source_url": f"file://{drop}/products_*.csv", "name": "c", "dataset": "c",
             "key_column": "sku", "schedule_type": "interval", "interval_seconds": 60}  # fmt: skip
    found = wait_for(
        lambda: api.post(f"{API}/imports/check", check, format="json").json().get("columns"),
        60, what="a worker answering\n" + processes.logs(),
    )  # fmt: skip
    assert found == ["sku", "name", "price"]
    put(drop / "later.csv.gz", gzipped(PRODUCTS_CSV))
    gz = api.post(f"{API}/imports/check", {**check, "source_url": f"file://{drop}/later.csv.gz"},
                  format="json").json()  # fmt: skip
    assert gz["ok"] and gz["rows"][0] == ["A-1", "Anvil", "10.50"], gz

    # When the import runs on its schedule, it takes the file and moves it to processed/
    services.update_import(imp, interval_seconds=2)
    services.resume_import(imp)
    first = wait_for(lambda: succeeded(imp), 60, what="a succeeded run\n" + processes.logs())[0]
    assert first.trigger == "schedule" and first.worker
    assert first.source_file == str(drop / "products_1.csv")
    # (moved once the run's end is committed: a moment after the run reads succeeded)
    moved = drop / "processed" / "products_1.csv"
    wait_for(moved.exists, 30, what="the first file processed\n" + processes.logs())
    assert moved.read_text() == PRODUCTS_CSV
    assert Record.objects.filter(dataset=imp.dataset).count() == 3

    # Then the next file delivered is the one taken
    put(drop / "products_2.csv", PRODUCTS_CSV + "D-4,Drill,99\n")
    wait_for(lambda: (drop / "processed" / "products_2.csv").exists(), 60,
             what="the second file processed\n" + processes.logs())  # fmt: skip
    second = next(r for r in succeeded(imp) if r.source_file.endswith("products_2.csv"))
    assert second.rows_inserted == 1
    assert Record.objects.filter(dataset=imp.dataset).count() == 4

    # When deliveries pile up between two ticks an hour apart, and one run is triggered
    services.update_import(imp, interval_seconds=3600)
    wait_for(lambda: not imp.runs.filter(status__in=ImportRun.ACTIVE_STATUSES).exists(), 30,
             what="the ticks' runs over\n" + processes.logs())  # fmt: skip
    now = time.time()
    put(drop / "products_3.csv", PRODUCTS_CSV + "D-4,Drill,100\n", mtime=now - 120)
    put(drop / "products_4.csv", PRODUCTS_CSV + "D-4,Drill,101\n", mtime=now - 60)
    triggered = services.enqueue_run(imp, trigger=ImportRun.Trigger.API)

    # Then that run takes the oldest, and the queue is drained at once, in order, not one
    # delivery per tick: the next run is queued as the one before it ends
    wait_for(lambda: (drop / "processed" / "products_4.csv").exists(), 60,
             what="the queue drained\n" + processes.logs())  # fmt: skip
    drained = list(imp.runs.filter(pk__gte=triggered.pk).order_by("pk"))
    assert [(r.trigger, r.status, r.source_file.rsplit("/", 1)[1]) for r in drained] == [
        ("api", "succeeded", "products_3.csv"), ("catchup", "succeeded", "products_4.csv")
    ], drained  # fmt: skip
    assert Record.objects.get(dataset=imp.dataset, key="D-4").data["price"] == "101"
    history = api.get(f"{API}/imports/{imp.pk}/history/").json()["results"]
    said = [(e["action"], e["by"], e["via"], e["run"]) for e in history if e["run"]]
    assert ("next delivery queued", None, "system", drained[1].pk) in said, said
    time.sleep(2)  # and nothing more waits, so no third run is queued
    assert imp.runs.filter(pk__gt=drained[1].pk).count() == 0
