"""Behind a PgBouncer in session mode (README: Behind PgBouncer) workers and beat work as they do
on PostgreSQL itself: each client keeps its server session while connected, so a run's staging
tables and the processes' session settings last. A guard of what the README promises: a first
load, a re-load in sync mode, and a worker SIGKILLed mid-import whose run beat's sweep hands to
the other worker, all through the pool (with `server_round_robin`, so that no client is given
the session it had by luck)."""

from __future__ import annotations

import signal
import time

import pytest

from schedules import services
from schedules.models import ImportRun, Record
from tests.conftest import wait_for
from tests.factories import make_import
from tests.pgbouncer_support import pgbouncer
from tests.reliability import (
    FAST,
    big_csv,
    lost_and_wrong_rows,
    pool_children,
    wait_for_download,
    wait_for_the_end,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]

ROWS = 20_000


def test_workers_and_beat_behind_a_pool_in_session_mode_load_re_load_and_survive_a_kill(
    alice, csv_server, processes
):
    with pgbouncer("session", server_round_robin=1) as pool:
        # Given two workers and beat whose DATABASE_URL is a PgBouncer in session mode
        workers = {
            name: processes.start("worker", DATABASE_URL=pool.url, WORKER_NAME=name, **FAST)
            for name in ("w1", "w2")
        }
        processes.start("beat", DATABASE_URL=pool.url, **FAST)
        wait_for(lambda: all(pool_children(w) for w in workers.values()), 30, what="pools")

        # When alice's sync import loads a file, then a file with a row changed and one gone
        url = csv_server.serve("/s.csv", "sku,name\nA-1,Anvil\nB-2,Bucket\nC-3,Crate\n")
        imp = services.pause_import(make_import(alice, url, mode="sync"))
        first = wait_for_the_end(services.enqueue_run(imp, trigger="api", user=alice), processes)
        csv_server.serve("/s.csv", "sku,name\nA-1,Anvil\nB-2,Big bucket\n")
        again = wait_for_the_end(services.enqueue_run(imp, trigger="api", user=alice), processes)

        # Then both succeeded, the dataset being the second file
        assert (first.status, first.rows_inserted) == ("succeeded", 3), first.error_message
        assert (again.status, again.rows_updated, again.rows_deleted) == ("succeeded", 1, 1), (
            again.error_message
        )
        stored = dict(Record.objects.filter(dataset=imp.dataset).values_list("key", "data"))
        assert stored == {"A-1": {"sku": "A-1", "name": "Anvil"},
                          "B-2": {"sku": "B-2", "name": "Big bucket"}}  # fmt: skip

        # When a whole worker is SIGKILLed in the middle of a slow file's import
        url = csv_server.serve("/big.csv", big_csv(ROWS), chunk_delay=0.5)
        big = make_import(alice, url, name="big", dataset="big", retry_backoff_seconds=1)
        big = services.pause_import(big)
        run = services.enqueue_run(big, trigger="manual", user=alice)
        wait_for_download(csv_server, run, processes.logs())
        time.sleep(1.0)
        victim = ImportRun.objects.get(pk=run.pk).worker.split("@")[0]
        processes.stop(workers[victim], signal.SIGKILL)

        # Then beat's sweep notices it and the other worker finishes the run once, every row
        ended = wait_for(
            lambda: ImportRun.objects.filter(pk=run.pk, finished_at__isnull=False).first(),
            45,
            what="the run to end after the kill\n" + processes.logs(),
        )
        assert ended.status == "succeeded", ended.error_message
        assert ended.attempts == 2
        assert ended.worker.split("@")[0] != victim
        assert lost_and_wrong_rows(big, ROWS) == (0, 0)
        assert "not started" not in processes.logs()
