"""Two imports writing one dataset at the same time: the merges take turns, and each compares its
file with the records as the other one left them, so the dataset ends as the last file says."""

import threading

import pytest
from django.db import connection

from schedules.models import ImportRun
from tasks.engine import merge
from tests.factories import make_import
from tests.importer_support import records, run_now

pytestmark = pytest.mark.django_db(transaction=True)

FIRST = "sku,price\nA,1\nB,2\nC,3\n"
# Another import of the same dataset changes A while the late run is under way.
OTHER = "sku,price\nA,100\n"
# The late run's file: A as it was at first (so it looks unchanged at first sight), B changed.
LATE = "sku,price\nA,1\nB,20\nC,3\n"


def test_a_merge_that_waited_for_another_compares_with_what_that_one_wrote(
    alice, csv_server, monkeypatch
):
    # Given a dataset loaded once, and two imports writing into it
    late = make_import(alice, csv_server.serve("/first.csv", FIRST), name="late", dataset="shop")
    assert run_now(late).rows_inserted == 3
    csv_server.serve("/first.csv", LATE)
    other = make_import(alice, csv_server.serve("/other.csv", OTHER), name="other", dataset="shop")

    # When the late run has staged its file and is about to merge, the other import's run
    # merges first
    late_waits, other_done = threading.Event(), threading.Event()
    lock_dataset = merge._lock_dataset

    def other_merges_first(dataset_id: int, import_id: int) -> tuple[str, int]:
        if threading.current_thread().name == "late run":
            late_waits.set()
            assert other_done.wait(30)
        return lock_dataset(dataset_id, import_id)

    monkeypatch.setattr(merge, "_lock_dataset", other_merges_first)
    outcome: dict[str, ImportRun] = {}

    def late_run() -> None:
        try:
            outcome["late"] = run_now(late)
        finally:
            connection.close()  # this thread's own connection

    late_thread = threading.Thread(target=late_run, name="late run")
    late_thread.start()
    assert late_waits.wait(30)
    other_run = run_now(other)
    other_done.set()
    late_thread.join(30)

    # Then both succeeded, and the dataset is the late run's file: A written back
    late_run = outcome["late"]
    assert (other_run.status, other_run.rows_updated) == ("succeeded", 1)
    assert late_run.status == "succeeded"
    assert records(late) == {
        "A": {"sku": "A", "price": "1"},
        "B": {"sku": "B", "price": "20"},
        "C": {"sku": "C", "price": "3"},
    }
    assert (late_run.rows_updated, late_run.rows_unchanged) == (2, 1)

    # And the late run's file is what the dataset holds now: fetched again, it changes nothing
    again = run_now(late)
    assert (again.rows_unchanged, again.rows_updated) == (3, 0)
    assert records(late)["A"] == {"sku": "A", "price": "1"}
