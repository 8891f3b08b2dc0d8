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
from tests.factories import PRODUCTS_CSV, make_import
from tests.server_settings_support import database_setting, twenty_imports_run_three_times
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
    # Given a server whose transactions default to serializable, two workers of four, and
    # twenty imports: bob's twelve write to three datasets, alice's eight to one each
    # When every import runs, three times over
    twenty_imports_run_three_times(alice, bob, csv_server, processes, within=120)

    # Then each run succeeded at its first attempt, and no worker met a serialization failure
    ended = collections.Counter(
        ImportRun.objects.values_list("status", "attempts", "error_message")
    )
    assert ended == {("succeeded", 1, ""): 60}
    assert not re.search(r"could not serialize", processes.log_of("worker"), re.IGNORECASE)
