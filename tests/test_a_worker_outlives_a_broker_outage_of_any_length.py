"""A worker outlives a broker outage of any length, and takes runs again when Redis is back.

Celery gives up reconnecting after `broker_connection_max_retries` (100 by default), its waits
growing to 30 s: a Redis away for about 46 minutes (maintenance, a failed host's replacement)
stopped every worker for good, and under `make run` honcho stopped the whole stack with it.
The worker now tries for as long as it takes (CELERY_BROKER_CONNECTION_MAX_RETRIES), saying
"Cannot connect" once a minute (project.worker_log).

The worker runs under libfaketime at 200 times the speed, so its hour of waits passes in about
twenty seconds.
"""

from __future__ import annotations

import glob
import time

import pytest

from project.devservices import free_port
from tests.conftest import wait_for
from tests.reliability import redis_server
from tests.test_a_worker_that_lost_its_broker_says_so_in_words_and_runs_again import (
    waits_for_runs,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]

SPEED = 200
# Past Celery's 100 tries of old (about 46 minutes of waits), in the worker's clock.
OUTAGE_SECONDS = 66 * 60


def sped_up(speed: int) -> dict[str, str]:
    """The environment of a process whose clock, and its sleeps, run `speed` times as fast."""
    library = glob.glob("/usr/lib/*/faketime/libfaketime.so.1")
    assert library, "libfaketime is missing: run `make faketime`"
    return {"LD_PRELOAD": library[0], "FAKETIME": f"+0 x{speed}"}


def test_a_worker_whose_redis_is_away_for_an_hour_takes_runs_again(processes, tmp_path):
    with redis_server(free_port(), tmp_path) as server:
        # Given a worker waiting for runs on a Redis of its own
        worker = processes.start(
            "worker", REDIS_URL=server.url, CELERY_BROKER_URL=server.url, **sped_up(SPEED)
        )
        wait_for(lambda: waits_for_runs(server), 60, what="the worker\n" + processes.logs())

        # When Redis is away for an hour (of the worker's clock)
        server.kill()
        time.sleep(OUTAGE_SECONDS / SPEED)
        alive = worker.poll() is None
        server.start()

        # Then the worker is still there, and waits on its queue again once Redis is back
        assert alive, "the worker gave up\n" + processes.log_of("worker")
        wait_for(lambda: waits_for_runs(server), 60, what="the worker again\n" + processes.logs())
        # (stopped while its Redis is there: its clock sped up, a worker stopped after it went
        # waited out the whole stop timeout of the test's teardown)
        processes.stop_all()
