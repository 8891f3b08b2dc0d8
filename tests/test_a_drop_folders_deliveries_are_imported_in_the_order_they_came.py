"""A drop folder's glob whose files are filed away in processed/ once imported is a queue of
deliveries: each run takes the oldest delivery waiting (tasks.drop_folder), so that files that
piled up while no run took them (workers away for a weekend, a feed faster than its schedule)
are imported in the order they came and the dataset ends with the newest one's values. A
delivery that could not be filed away is passed over once imported."""

from __future__ import annotations

import logging
import os
import time

import pytest

from schedules import unsaved_checks
from schedules.models import Record
from schedules.source_check import unsaved_fields
from tasks import deliveries, source_check
from tests.drop_support import put
from tests.factories import make_import
from tests.importer_support import run_now

# The files move once each run's end is committed: these tests commit, as a worker does.
pytestmark = pytest.mark.django_db(transaction=True)


def delivery(price: str) -> str:
    return f"sku,name,price\nA-1,Anvil,{price}\n"


def price_now(imp) -> str:
    return Record.objects.get(dataset=imp.dataset, key="A-1").data["price"]


def test_deliveries_that_piled_up_are_imported_oldest_first_and_the_newest_stays(alice, drop):
    # Given three days' deliveries that waited while no run took them
    now = time.time()
    for day, price in enumerate(("1.00", "2.00", "3.00"), start=1):
        put(drop / f"products_day{day}.csv", delivery(price), mtime=now - 86400 * (4 - day))
    imp = make_import(alice, f"file://{drop}/products_*.csv", move_processed=True)

    # When three runs take them
    taken = [run_now(imp).source_file for _ in range(3)]

    # Then each took the oldest waiting, and the dataset holds the newest delivery's values
    assert [name.rsplit("/", 1)[1] for name in taken] == [
        "products_day1.csv", "products_day2.csv", "products_day3.csv"
    ]  # fmt: skip
    assert price_now(imp) == "3.00"
    assert sorted(p.name for p in (drop / "processed").iterdir()) == [
        "products_day1.csv", "products_day2.csv", "products_day3.csv"
    ]  # fmt: skip
    # And the next tick finds nothing waiting
    assert run_now(imp).status == "skipped"


def test_deliveries_of_one_moment_are_taken_in_their_numbers_order(alice, drop):
    # Files unpacked together share their time (tar x, cp -p, a share keeping whole seconds):
    # in text order _10 and _11 came before _8 and _9, and the dataset ended with _9's price
    moment = time.time() - 3600
    for number in (8, 9, 10, 11):
        put(drop / f"products_{number}.csv", delivery(f"{number}.00"), mtime=moment)
    imp = make_import(alice, f"file://{drop}/products_*.csv", move_processed=True)

    taken = [run_now(imp).source_file.rsplit("/", 1)[1] for _ in range(4)]

    assert taken == ["products_8.csv", "products_9.csv", "products_10.csv", "products_11.csv"]
    assert price_now(imp) == "11.00"


def test_a_delivery_that_could_not_be_filed_away_does_not_hold_back_the_next(alice, drop):
    # Given two deliveries, and a `processed` that is a file, so nothing can be filed away
    now = time.time()
    put(drop / "processed", "not a folder\n")
    put(drop / "products_1.csv", delivery("1.00"), mtime=now - 120)
    put(drop / "products_2.csv", delivery("2.00"), mtime=now - 60)
    imp = make_import(alice, f"file://{drop}/products_*.csv", move_processed=True)

    # When three runs take them
    runs = [run_now(imp) for _ in range(3)]

    # Then the first delivery was imported once, then the second, which the third run found
    # unchanged; each run says its file stayed, and the dataset holds the newer values
    assert [run.source_file.rsplit("/", 1)[1] for run in runs] == [
        "products_1.csv", "products_2.csv", "products_2.csv"
    ]  # fmt: skip
    assert [run.rows_updated for run in runs] == [0, 1, 0]
    assert all("not moved to processed/" in run.error_message for run in runs)
    assert price_now(imp) == "2.00"


def test_a_delivery_whose_run_failed_says_how_many_wait_behind_it(alice, drop):
    # Given a first delivery that is no CSV, and two good ones after it
    now = time.time()
    put(drop / "products_1.csv", bytes(range(256)) * 4, mtime=now - 180)
    put(drop / "products_2.csv", delivery("2.00"), mtime=now - 120)
    put(drop / "products_3.csv", delivery("3.00"), mtime=now - 60)
    imp = make_import(alice, f"file://{drop}/products_*.csv", move_processed=True)

    # When its run fails, then the run says the queue waits behind its file
    failed = run_now(imp)
    failed.refresh_from_db()
    assert failed.status == "failed" and failed.source_file.endswith("products_1.csv")
    assert failed.error_message == (
        "the file is not a CSV: it holds binary data; the next run takes this file again, and "
        "2 later deliveries wait behind it"
    )
    assert failed.error_details["waiting_behind"] == 2

    # And once it is moved away, the next deliveries are taken in their order
    (drop / "products_1.csv").rename(drop / "products_1.csv.bad")
    assert [run_now(imp).source_file.rsplit("/", 1)[1] for _ in range(2)] == [
        "products_2.csv", "products_3.csv"
    ]  # fmt: skip
    assert price_now(imp) == "3.00"


def test_the_deliveries_said_to_wait_behind_a_failed_one_are_those_not_imported_yet(alice, drop):
    # Regression (drops hunt, bug 3): waiting_behind counted every other file of the glob,
    # those imported before that could not be filed away too: "3 later deliveries wait" of
    # 2 files imported long ago and 1 delivery
    # Given two deliveries imported and left there (`processed` is a file)
    now = time.time()
    put(drop / "processed", "not a folder\n")
    put(drop / "products_1.csv", delivery("1.00"), mtime=now - 240)
    put(drop / "products_2.csv", delivery("2.00"), mtime=now - 180)
    imp = make_import(alice, f"file://{drop}/products_*.csv", move_processed=True)
    assert [run_now(imp).status for _ in range(2)] == ["succeeded", "succeeded"]

    # When the next delivery is no CSV, and one more waits behind it
    put(drop / "products_3.csv", bytes(range(256)) * 4, mtime=now - 120)
    put(drop / "products_4.csv", delivery("4.00"), mtime=now - 60)
    failed = run_now(imp)

    # Then its run says that one delivery waits behind it, not the two imported before
    assert failed.status == "failed" and failed.source_file.endswith("products_3.csv")
    assert failed.error_details["waiting_behind"] == 1, failed.error_message
    assert failed.error_message.endswith(
        "the next run takes this file again, and 1 later delivery waits behind it"
    )


def test_the_check_before_save_shows_the_delivery_a_run_would_take(alice, drop):
    # Given two deliveries waiting
    now = time.time()
    put(drop / "products_1.csv", delivery("1.00"), mtime=now - 120)
    put(drop / "products_2.csv", delivery("2.00"), mtime=now - 60)
    queue = make_import(alice, f"file://{drop}/products_*.csv", move_processed=True)
    latest = make_import(alice, f"file://{drop}/products_*.csv", name="latest", dataset="latest")

    # When their sources are checked, saved or not, then each shows the file a run takes:
    # the oldest delivery of a queue, the newest file otherwise
    for imp, expected in ((queue, "products_1.csv"), (latest, "products_2.csv")):
        saved = source_check.check_source(imp.pk)
        unsaved = source_check.check_fields(unsaved_checks.put(unsaved_fields(imp), wait=10))
        assert saved["source_file"] == unsaved["source_file"] == str(drop / expected), (
            saved, unsaved,
        )  # fmt: skip


def test_the_queue_drains_to_the_next_delivery_but_not_to_its_own_file_written_again(alice, drop):
    # Given a queue whose file cannot be filed away (`processed` is a file), imported once
    now = time.time()
    put(drop / "processed", "not a folder\n")
    put(drop / "products_1.csv", delivery("1.00"), mtime=now - 120)
    imp = make_import(alice, f"file://{drop}/products_*.csv", move_processed=True)
    ended = run_now(imp)
    assert ended.status == "succeeded"

    # When its file is written again: the drain leaves that to the next tick (a file rewritten
    # every second would otherwise be imported in a loop)
    put(drop / "products_1.csv", delivery("1.50"), mtime=now - 60)
    assert deliveries.queue_next(ended) is None

    # But when another delivery waits, the next run is queued at once, for it
    put(drop / "products_0.csv", delivery("0.50"), mtime=now - 180)
    queued = deliveries.queue_next(ended)
    assert queued is not None and queued.trigger == "catchup"
    assert queued.status == "queued"


def test_a_next_delivery_named_in_latin1_is_left_to_its_tick_with_words_in_the_log(
    alice, drop, caplog
):
    # Regression (review2 bug 5): queueing the next run wrote the file's name into the
    # history's JSON, PostgreSQL refused it, and the worker's log gave the SQL error as reason
    # Given a queue whose next delivery's name is Latin-1, after a good run
    now = time.time()
    put(drop / "products_1.csv", delivery("1.00"), mtime=now - 120)
    put(drop / os.fsdecode("products_été.csv".encode("latin-1")), delivery("2.00"), mtime=now - 60)
    imp = make_import(alice, f"file://{drop}/products_*.csv", move_processed=True)
    ended = run_now(imp)
    assert ended.status == "succeeded"

    # When the worker looks for the next delivery
    with caplog.at_level(logging.WARNING, logger="importbeat.drop_folder"):
        queued = deliveries.queue_next(ended)

    # Then nothing is queued, and the log says why in the words the next tick's run will give
    assert queued is None
    assert "has a name that is not UTF-8 text: rename it" in caplog.text, caplog.text
    assert "json" not in caplog.text.lower(), caplog.text


def test_an_empty_delivery_that_cannot_be_filed_away_holds_back_nothing(alice, drop):
    # An empty file's run kept no version of it: every run took it again as the oldest
    # delivery waiting, and the next delivery was never imported
    now = time.time()
    put(drop / "processed", "not a folder\n")
    put(drop / "products_1.csv", "", mtime=now - 120)
    put(drop / "products_2.csv", "A-1,Anvil\n", mtime=now - 60)
    imp = make_import(
        alice, f"file://{drop}/products_*.csv", move_processed=True, has_header=False,
        key_column="column_1",
    )  # fmt: skip

    taken = [run_now(imp).source_file.rsplit("/", 1)[1] for _ in range(2)]

    assert taken == ["products_1.csv", "products_2.csv"]
    assert Record.objects.filter(dataset=imp.dataset, key="A-1").exists()


def test_the_newest_of_files_of_one_moment_is_the_greatest_number(alice, drop):
    # Without move_processed the newest match is read: of products_8, _9 and _10 written
    # together, products_9 was read (text order), where an SFTP glob read products_10 (review).
    for number in (8, 9, 10):
        put(drop / f"products_{number}.csv", f"sku,name,price\nP-{number},n,1.00\n",
            mtime=1_000_000_000)  # fmt: skip
    imp = make_import(alice, f"file://{drop}/products_*.csv")

    run = run_now(imp)

    assert run.source_file.endswith("products_10.csv")
