"""A worker's pool process keeps the same memory however many of its runs fail.

The bug it pins: each pool process grew by some 185 kB per failed run and stayed there, about
120 MB above a process that ran good runs after some 600 failures (225 MB against 107 MB). A
failed task's exception kept its traceback, which reached Celery's trace_task frame, whose
locals held billiard's ExceptionInfo of that exception (with its copy of the frames' code
positions): a cycle freed only by a full garbage collection, which a process as big as a
worker's runs some 600 failed runs apart. The task class now drops the traceback once Celery
has stored, logged and told the failure (project.task_class, on task_postrun).

Memory figures, not timings, with a wide margin: 300 failed runs grew the old code's pool
process by about 56 MB, the new one's by about 1 MB.
"""

from __future__ import annotations

import psutil
import pytest

from schedules import services
from schedules.models import ImportRun
from tests.conftest import wait_for
from tests.factories import make_import

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]

IMPORTS = 50
ROUNDS_AFTER_THE_FIRST = 6  # 300 failed runs
MARGIN_KB = 15 * 1024
# The worker as deployed: DJANGO_DEBUG=1 (the tests' default) keeps each connection's
# statements, a growth of its own.
AS_DEPLOYED = {"DJANGO_DEBUG": "0", "DJANGO_SECRET_KEY": "pool-memory-" + "x" * 40}


def pool_process_rss_kb(worker) -> int:
    (pool_process,) = psutil.Process(worker.pid).children(recursive=True)
    return pool_process.memory_info().rss // 1024


def test_a_workers_pool_process_does_not_grow_with_failed_runs(alice, csv_server, processes):
    # Given imports whose source answers 404 (a permanent failure: no retry), and a worker
    # with one pool process
    imports = []
    for index in range(IMPORTS):
        path = f"/gone-{index}.csv"
        csv_server.serve(path, "gone", status=404)
        imports.append(
            make_import(
                alice,
                csv_server.base_url + path,
                name=f"gone {index}",
                dataset=f"gone-{index}",
                max_retries=0,
            )
        )
    worker = processes.start("worker", WORKER_NAME="pool-memory", WORKER_CONCURRENCY="1",
                             **AS_DEPLOYED)  # fmt: skip

    def run_each_once() -> None:
        runs = [services.enqueue_run(imp, trigger="api", user=alice).pk for imp in imports]
        wait_for(
            lambda: (
                ImportRun.objects.filter(pk__in=runs, finished_at__isnull=False).count()
                == len(runs)
            ),
            120,
            what="every run ended",
        )
        assert set(ImportRun.objects.filter(pk__in=runs).values_list("status", flat=True)) == {
            ImportRun.Status.FAILED
        }

    # When its first 50 runs have failed, and then 300 more
    run_each_once()
    after_the_first = pool_process_rss_kb(worker)
    for _round in range(ROUNDS_AFTER_THE_FIRST):
        run_each_once()
    after_the_last = pool_process_rss_kb(worker)

    # Then its pool process holds about what it held after the first 50
    grown = after_the_last - after_the_first
    print(f"pool process RSS after 50 failed runs {after_the_first} kB, after 350 "
          f"{after_the_last} kB: {grown:+} kB")  # fmt: skip
    assert grown < MARGIN_KB, (
        f"the pool process grew by {grown} kB over 300 failed runs "
        f"({after_the_first} kB after the first 50, {after_the_last} kB after the last)"
    )
