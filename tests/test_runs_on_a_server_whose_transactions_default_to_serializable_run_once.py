"""An operator's server whose transactions default to `serializable` or `repeatable read` for
importbeat's database or role (`ALTER DATABASE … SET default_transaction_isolation`, set for
safety): importbeat's claims, counters and hand-offs are written for read committed, where a
conditional UPDATE that meets a row another session changed reads it again. Under either level
they failed with serialization failures (40001) instead: a run that two workers raced for
failed its claim, runs running side by side went back to the queue as "importbeat's database
is unreachable", were cancelled "(the run lost its connection to importbeat's database)", or
wrote their outcome at the third try; 20 imports run three times over took 28 s instead of 2.
Each new connection now pins read committed (common/postgres.py).
"""

from __future__ import annotations

import collections
import re
import threading

import pytest

from schedules import services
from schedules.models import ImportRun
from tests.conftest import wait_for
from tests.factories import PRODUCTS_CSV, make_import
from tests.reliability import FAST
from tests.server_settings_support import database_setting
from tests.test_reliability_disk_full import superuser_session

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize("level", ["serializable", "repeatable read"])
def test_a_claim_that_meets_another_workers_claim_finds_the_run_taken(
    alice, csv_server, sent, level
):
    imp = make_import(alice, csv_server.serve("/p.csv", PRODUCTS_CSV))
    run = services.enqueue_run(imp, trigger="manual", user=alice)
    table = ImportRun._meta.db_table
    # Given a server whose transactions default to `level`
    with database_setting("default_transaction_isolation", level), superuser_session() as other:
        # and another worker's claim of the same run (a redelivered message), not committed yet
        other.execute("BEGIN")
        other.execute(
            f"UPDATE {table} SET status = 'running', attempts = attempts + 1 WHERE id = %s",
            [run.pk],
        )
        committed = threading.Timer(0.5, other.commit)
        committed.start()

        # When this worker claims it too
        try:
            claim = services.claim_run(run, task_id="second", worker="second")
        finally:
            committed.join()

    # Then it finds the run taken, the other claim's alone
    assert claim == services.Claim.GONE
    assert ImportRun.objects.get(pk=run.pk).attempts == 1


@pytest.mark.processes
def test_two_workers_run_twenty_imports_side_by_side_each_at_its_first_attempt(
    alice, bob, csv_server, processes
):
    rows = "".join(f"K{i},n{i},{i}\n" for i in range(2000))
    source = csv_server.serve("/p.csv", "sku,name,price\n" + rows)
    # bob's twelve imports write to three datasets, alice's eight to one each
    imports = [
        make_import(bob, source, name=f"b{i}", dataset=f"shared{i % 3}", retry_backoff_seconds=1)
        for i in range(12)
    ] + [
        make_import(alice, source, name=f"a{i}", dataset=f"a{i}", retry_backoff_seconds=1)
        for i in range(8)
    ]
    # Given a server whose transactions default to serializable, and two workers of four
    with database_setting("default_transaction_isolation", "serializable"):
        for _ in range(2):
            processes.start(
                "worker", **{**FAST, "WORKER_CONCURRENCY": "4", "MAX_RUNNING_PER_OWNER": "3"}
            )
        wait_for(
            lambda: processes.logs().count("ready.") == 2, 60, what="workers\n" + processes.logs()
        )

        # When every import runs, three times over
        for _ in range(3):
            for imp in imports:
                services.enqueue_run(imp, trigger="manual", user=imp.owner)
            wait_for(
                lambda: not ImportRun.objects.exclude(status__in=ImportRun.FINAL_STATUSES).exists(),
                120,
                what="the runs to end\n" + processes.logs(),
            )
        processes.stop_all()

    # Then each run succeeded at its first attempt, and no worker met a serialization failure
    ended = collections.Counter(
        ImportRun.objects.values_list("status", "attempts", "error_message")
    )
    assert ended == {("succeeded", 1, ""): 60}
    assert not re.search(r"could not serialize", processes.log_of("worker"), re.IGNORECASE)
