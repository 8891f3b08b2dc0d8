"""A run's message that Redis brings back from an older snapshot while the run is running
starts no second attempt: the run ends once, from its one attempt.

Regression (snapshot hunt): Redis restarted from a snapshot taken while the run's message
waited in the queue gives that message again, and the lease its live attempt took since is
gone until that attempt's next renewal (a third of RUN_LEASE_SECONDS: 20 s at the defaults).
The worker that took the copy found the lease free and took the `running` run for a lost
worker's: a run allowed no retry failed at once, "the worker was lost during each of its 1
attempts", while its worker imported on (with retries left: a second attempt beside the live
one). A delivery that finds a free lease over a run whose heartbeat is fresh now comes back
later (tasks/locks.py `attempt_alive`).
"""

import shutil
import time
from unittest import mock

import pytest
import redis

from project.devservices import free_port
from schedules import services
from tests.factories import make_import
from tests.reliability import FAST, big_csv, figures, redis_server, wait_for_the_end
from tests.reliability import wait_for_download as wait_for_the_download
from tests.test_reliability_redis_restarted_during_a_run import send

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]

ROWS = 20_000


def test_a_running_runs_message_brought_back_by_a_snapshot_starts_no_second_attempt(
    alice, csv_server, processes, tmp_path
):
    url = csv_server.serve("/big.csv", big_csv(ROWS), chunk_delay=1.5)
    imp = make_import(alice, url, max_retries=0)
    with redis_server(free_port(), tmp_path) as server:
        env = {
            **FAST,
            # Renewed every 10 s: the copy of the message comes before the live attempt takes
            # its lease again, as it does at the defaults (every 20 s).
            "RUN_LEASE_SECONDS": "30",
            "WORKER_CONCURRENCY": "2",
            "REDIS_URL": server.url,
            "CELERY_BROKER_URL": server.url,
        }
        with mock.patch("schedules.services.send_run"):
            run = services.enqueue_run(imp, trigger="manual", user=alice)
        send(run, server.url)
        # Given a run of an import allowed no retry, and a snapshot of Redis taken while the
        # run's message waits in the queue
        redis.Redis.from_url(server.url).save()
        shutil.copy(tmp_path / "dump.rdb", tmp_path / "snapshot.rdb")
        # ... and a worker (two slots) importing the run since, on a slow file
        processes.start("worker", **env)
        wait_for_the_download(csv_server, run, processes.logs())
        time.sleep(2)

        # When Redis crashes and restarts from that snapshot
        server.kill()
        shutil.copy(tmp_path / "snapshot.rdb", tmp_path / "dump.rdb")
        server.start()

        # Then the run ends once, from its one attempt
        wait_for_the_end(run, processes, 90)
        # (a second attempt would have asked for the file again by now)
        time.sleep(3)
        run.refresh_from_db()
        imp.refresh_from_db()
        result = figures(
            "Redis restarted from a snapshot mid-run", imp, ROWS,
            status=run.status, attempts=run.attempts, error=run.error_message,
            downloads=csv_server.hits.get("/big.csv"),
            counted=(imp.total_runs, imp.successful_runs, imp.failed_runs),
        )  # fmt: skip
    assert (run.status, run.attempts) == ("succeeded", 1), run.error_details
    # One download, the run counted once, every row there
    assert (result["downloads"], result["counted"]) == (1, (1, 1, 0))
    assert (result["records"], result["lost_rows"], result["wrong_rows"]) == (ROWS, 0, 0)
