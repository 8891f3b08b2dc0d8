"""Benchmark: a worker's event loop after many consumer restarts (a broker link that drops now
and then, for months).

Run with `make bench`, or alone. Celery starts its consumer again on a new broker connection
after each lost one, in the same event loop. The bench does what Celery does, `BENCH_RESTARTS`
times (320): a connection and its consumer registered in one kombu hub, its connections dropped
by the server, the connection collected and the hub reset. Once with kombu's own Redis transport,
once with importbeat's (project.broker_transport), in the same run against the suite's Redis.
Printed for each: the callbacks left on the hub's every tick, the memory kept per restart, and
the time one loop spends in its tick callbacks. Timings are printed, never asserted.
"""

from __future__ import annotations

import gc
import os
import time
import tracemalloc

import pytest
from django.conf import settings
from kombu import Connection, Queue
from kombu.asynchronous import Hub

from project.celery import BROKER_TRANSPORT
from tests.test_a_consumer_restarted_after_a_lost_broker_connection import (
    consuming,
    drop_connections,
    server,
)

pytestmark = pytest.mark.timeout(1800)

RESTARTS = int(os.environ.get("BENCH_RESTARTS", "320"))
# "redis" is importbeat's own in its processes (project/celery.py): kombu's by its path.
TRANSPORTS = {
    "kombu's": "kombu.transport.redis:Transport",
    "importbeat's": BROKER_TRANSPORT,
}


def restart(loop: Hub, transport: str, queue) -> None:
    timers = {id(scheduled.entry) for scheduled in loop.timer.queue}
    connection = Connection(settings.CELERY_BROKER_URL, transport=transport)
    consuming(connection, queue, [])
    connection.transport.register_with_event_loop(connection.connection, loop)
    drop_connections(connection)
    connection.collect(socket_timeout=5)
    loop.reset()
    # Celery cancels the timers its loop started (celery.worker.loops.asynloop), and the hub
    # drops a cancelled one once its time comes, seconds later: both, at once.
    for scheduled in loop.timer.queue:
        if id(scheduled.entry) not in timers:
            scheduled.entry.cancel()
    kept = [scheduled for scheduled in loop.timer.queue if not scheduled.entry.canceled]
    loop.timer.clear()
    for scheduled in kept:
        loop.timer.enter_at(scheduled.entry, scheduled.eta, scheduled.priority)


def bench_consumer_restarts():
    queue = Queue("bench-consumer-restarts")
    for name, transport in TRANSPORTS.items():
        loop = Hub()
        restart(loop, transport, queue)  # what the first one loads
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.take_snapshot()
        started = time.perf_counter()
        for _ in range(RESTARTS):
            restart(loop, transport, queue)
        took = time.perf_counter() - started
        gc.collect()
        kept = sum(
            stat.size_diff for stat in tracemalloc.take_snapshot().compare_to(before, "filename")
        )
        tracemalloc.stop()
        started = time.perf_counter()
        for _ in range(100):
            for callback in list(loop.on_tick):
                callback()
        per_loop = (time.perf_counter() - started) / 100
        print(
            f"\n[figures] {name} transport, {RESTARTS} restarts in {took:.1f}s: "
            f"{len(loop.on_tick)} callbacks left on every tick, {kept / RESTARTS / 1024:.1f} KiB "
            f"kept per restart, {per_loop * 1000:.2f} ms a loop in tick callbacks",
            flush=True,
        )
    server().delete(queue.name)
