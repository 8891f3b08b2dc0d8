"""Benchmark: hiding a replaced credential in an import with 100,000 runs (README "Sources and
credentials").

Run alone (`make bench` runs it too). One import with BENCH_REPLACED_RUNS runs (100,000), each
with a failed run's texts (a message, an attempt, a traceback, a row error), one in a hundred
repeating the import's token. The token is replaced through services.update_import (what every
surface calls), timed as the change a request waits for; then the job a worker runs
(its pass over the runs, timed whole, with its longest batch: one batch is one transaction,
the longest any run row stays locked), then the whole job once more (nothing left to change)
with the Python memory it allocated at its peak (tracemalloc, which slows it: not timed).
Printed, never asserted.
"""

from __future__ import annotations

import os
import time
import tracemalloc

import pytest

from schedules import replaced_credentials, saved_secrets, services
from schedules.models import ImportRun, ReplacedCredential
from tests.bench.figures import report
from tests.factories import make_import

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(1800),
    pytest.mark.usefixtures("encryption_key"),
]

RUNS = int(os.environ.get("BENCH_REPLACED_RUNS", "100000"))
TOKEN = "old-token-4711"


def bench_hiding_a_replaced_credential_in_an_import_with_100k_runs(alice):
    imp = make_import(alice, "https://files.example.com/p.csv",
                      credential={"kind": "bearer", "token": TOKEN})  # fmt: skip
    # Every run has texts; one in a hundred repeats the token.
    for first in range(0, RUNS, 5000):
        ImportRun.objects.bulk_create(
            [ImportRun(
                scheduled_import=imp, trigger="schedule", status="failed", attempts=1,
                error_message=f"the server answered HTTP 401: {TOKEN if n % 100 == 0 else n}",
                error_details={
                    "attempts": [{"attempt": 1, "error": f"HTTP 401 {n}", "at": "2026-12-01"}],
                    "traceback": f"Traceback (most recent call last):\nValueError: {n}",
                    "rows": [{"line": 2, "column": "key", "value": f"v{n}", "reason": "required"}],
                },
            ) for n in range(first, min(first + 5000, RUNS))]
        )  # fmt: skip

    started = time.perf_counter()
    services.update_import(imp, credential={"kind": "bearer", "token": "new-token-0815"})
    change_ms = (time.perf_counter() - started) * 1000
    replaced = ReplacedCredential.objects.get()

    batches: list[float] = []
    last = [time.perf_counter()]

    def done(_last_id: int) -> None:
        now = time.perf_counter()
        batches.append(now - last[0])
        last[0] = now
        ReplacedCredential.objects.filter(pk=replaced.pk).update(done_until=_last_id)

    started = time.perf_counter()
    # The job's pass over the runs, batch by batch, as replaced_credentials.hide makes it.
    tally = saved_secrets.hide_in_runs(
        ImportRun, runs=ImportRun.objects.filter(scheduled_import=imp), token=replaced.secret,
        done=done,
    )  # fmt: skip
    runs_s = time.perf_counter() - started
    # Then the whole job again (nothing left to change: the same reads), its memory traced.
    ReplacedCredential.objects.filter(pk=replaced.pk).update(done_until=0)
    tracemalloc.start()
    again = replaced_credentials.hide(replaced.pk)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    assert tally.changed == RUNS // 100 and again["runs"] == 0
    report(
        "replaced credential",
        runs=RUNS,
        change_ms=f"{change_ms:.1f}",
        hide_runs_s=f"{runs_s:.1f}",
        changed=tally.changed,
        batches=len(batches),
        longest_batch_ms=f"{max(batches) * 1000:.0f}",
        peak_python_mb=f"{peak / 1024**2:.1f}",
    )
