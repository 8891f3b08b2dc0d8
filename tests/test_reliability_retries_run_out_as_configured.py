"""A failing import retries as configured and then fails: max_retries + 1 attempts, each delay
drawn with full jitter under base * 2^n capped at retry_backoff_max_seconds, and the run ends
`failed` with every attempt listed. A real worker, a source that always answers HTTP 503."""

import itertools
import threading
import time

import pytest

from schedules import services
from tests.conftest import Route
from tests.factories import make_import
from tests.reliability import FAST, wait_for_the_end

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]

MAX_RETRIES = 3
BASE, CAP = 1, 2  # seconds: delay bounds 1, 2, 2 (2 * 2 = 4 is capped at 2)
# Time a worker needs between the end of a delay and the next request (message, claim, fetch).
OVERHEAD = 3.0


def test_the_retries_of_a_failing_import_run_out_as_configured(alice, csv_server, processes):
    # Given an import whose source is always unavailable (transient: HTTP 503)
    requested_at: list[float] = []
    lock = threading.Lock()

    def unavailable() -> Route:
        with lock:
            requested_at.append(time.monotonic())
        return Route(b"try later", status=503)

    csv_server.routes["/down.csv"] = unavailable
    imp = make_import(
        alice,
        csv_server.base_url + "/down.csv",
        max_retries=MAX_RETRIES,
        retry_backoff_seconds=BASE,
        retry_backoff_max_seconds=CAP,
        alert_after_failures=0,
    )
    processes.start("worker", **FAST)

    # When it runs
    run = services.enqueue_run(imp, trigger="api", user=alice)
    run = wait_for_the_end(run, processes)

    # Then it made max_retries + 1 attempts and failed, every attempt listed
    attempts = run.error_details["attempts"]
    delays = [a["retry_in"] for a in attempts if "retry_in" in a]
    gaps = [round(b - a, 2) for a, b in itertools.pairwise(requested_at)]
    bounds = [min(CAP, BASE * 2**n) for n in range(MAX_RETRIES)]
    print(f"\n[figures] retries: attempts={run.attempts} delay_bounds={bounds} "
          f"delays={delays} gaps_between_requests={gaps}")  # fmt: skip
    assert run.status == "failed"
    assert run.attempts == MAX_RETRIES + 1 == len(requested_at)
    assert [a["attempt"] for a in attempts] == [1, 2, 3, 4]
    assert all("HTTP 503" in a["error"] for a in attempts)
    assert "HTTP 503" in run.error_message
    # ... each delay under its growing, capped bound, and actually waited
    assert len(delays) == MAX_RETRIES
    assert all(0 <= delay <= bound for delay, bound in zip(delays, bounds, strict=True))
    assert bounds == [1, 2, 2]
    for delay, gap in zip(delays, gaps, strict=True):
        assert delay - 0.1 <= gap <= delay + OVERHEAD
