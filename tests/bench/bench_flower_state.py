"""Benchmark: what Flower's persistent state costs at the number of tasks it keeps.

Flower (Procfile `flower`, `--persistent`) pickles every task it keeps into its store
(`FLOWER_DB`) every 10 s (`--state_save_interval`), on its event loop: its pages and API wait
meanwhile. It keeps `--max_tasks` tasks: FLOWER_MAX_TASKS, 10,000 by default since issue 15's
eighth round, 100,000 by Flower's own default. For each size, in a process of its own, this
feeds Flower's state the four events of an import task (sent, received, started, succeeded)
per task, then times two saves the way Flower saves and prints the store's size and the
process's peak memory. At 10,000 hourly imports, 10,000 tasks are about an hour of them.
Timings are printed, never asserted.
"""

from __future__ import annotations

import os
import resource
import shelve
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

SIZES = [int(n) for n in os.environ.get("BENCH_FLOWER_TASKS", "10000,100000").split(",")]


def measure(tasks: int) -> None:
    """Feed `tasks` tasks' events to Flower's state, save it twice as Flower does, print."""
    from flower.events import EventsState

    state = EventsState(max_tasks_in_memory=tasks)
    now = time.time()
    for clock in range(tasks):
        task = str(uuid.uuid4())
        common = {"uuid": task, "hostname": "worker@host", "pid": 1, "clock": clock,
                  "utcoffset": 0, "local_received": now, "timestamp": now}  # fmt: skip
        sent = {"name": "importbeat.execute_run", "args": "[]",
                "kwargs": "{'run_id': 987654, 'import_id': 1234, 'import_name': 'nightly feed'}",
                "retries": 0, "root_id": task, "parent_id": None}  # fmt: skip
        state.event({**common, **sent, "type": "task-sent", "queue": "celery"})
        state.event({**common, **sent, "type": "task-received"})
        state.event({**common, "type": "task-started"})
        result = "{'run_id': 987654, 'status': 'succeeded', 'rows_read': 100}"
        state.event({**common, "type": "task-succeeded", "runtime": 0.2, "result": result})
    saves = []
    with tempfile.TemporaryDirectory() as folder:
        store = Path(folder) / "flower.db"
        for _ in range(2):
            started = time.monotonic()
            with shelve.open(str(store), flag="n") as saved:
                saved["events"] = state
                saved["counter"] = dict(state.counter)
            saves.append(time.monotonic() - started)
        size = sum(path.stat().st_size for path in Path(folder).iterdir())
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"  {tasks:>7,} tasks: a save takes {saves[0]:.2f} s and {saves[1]:.2f} s"
          f" (every 10 s), store {size / 1e6:.0f} MB, peak memory {peak:.0f} MB")  # fmt: skip


def bench_flower_state_at_the_tasks_it_keeps() -> None:
    print("\nFlower's persistent state, by the number of tasks it keeps")
    for tasks in SIZES:
        code = f"from tests.bench.bench_flower_state import measure; measure({tasks})"
        subprocess.run([sys.executable, "-c", code], check=True, timeout=900)
