"""Mode sync deletes only what a whole file, read as its header says, lacks; and a sync import is
its dataset's one writer.

- A body the server compressed with `deflate` and cut short was taken for the whole file by
  urllib3's decoder, and sync deleted every row after the cut: importbeat asks for gzip alone,
  which its own reader checks whole, and refuses a body in another encoding.
- A columns spec standing in for a header with an empty name (an export that ends each line
  with a delimiter) was taken whatever the header said: the partner's next export moved the key
  column, every row was keyed by the product name, and sync deleted every record.
- Two imports sharing a dataset, one of them sync: each run deleted what the other wrote, and
  every run said `succeeded`. Such an import is refused at save.
"""

from __future__ import annotations

import threading
import zlib

import pytest
from django.db import connection, transaction

from schedules import services
from schedules.models import ScheduledImport
from tests.api_support import API, SOURCE, client_for
from tests.factories import PRODUCTS_CSV, make_import
from tests.http_support import RawServer
from tests.importer_support import records, run_now

pytestmark = pytest.mark.django_db

SPEC = [{"name": "sku", "type": "text"}, {"name": "name", "type": "text"},
        {"name": "price", "type": "text"}, {"name": "extra", "type": "text"}]  # fmt: skip


def product_rows(count: int, price: str = "1.00") -> bytes:
    lines = ["sku,name,price", *(f"S-{n:05d},Item {n},{price}" for n in range(count))]
    return ("\n".join(lines) + "\n").encode()


@pytest.fixture
def raw_server():
    server = RawServer(b"")
    yield server
    server.listener.close()


def test_a_download_asks_for_gzip_alone(alice, csv_server):
    imp = make_import(alice, csv_server.serve("/p.csv", product_rows(3).decode()))

    run_now(imp)

    assert csv_server.requests[-1][1].get("Accept-Encoding") == "gzip"


def test_a_deflate_body_cut_short_deletes_nothing(alice, raw_server):
    # Given a sync import holding 1,000 records
    whole = product_rows(1000)
    raw_server.answer = (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/csv\r\n"
        + f"Content-Length: {len(whole)}\r\nConnection: close\r\n\r\n".encode()
        + whole
    )
    imp = make_import(alice, raw_server.url, mode="sync")
    assert run_now(imp).rows_inserted == 1000

    # When a server sends it deflated anyway, and the connection breaks off half way
    packed = zlib.compress(product_rows(1000, price="2.00"))
    raw_server.answer = (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/csv\r\nContent-Encoding: deflate\r\n"
        b"Connection: close\r\n\r\n" + packed[: len(packed) // 2]
    )
    run = run_now(imp)

    # Then the run fails, in words, and deletes nothing (it was partial, 511 records deleted)
    assert run.status == "failed" and len(records(imp)) == 1000
    assert "(Content-Encoding: deflate; it asks for gzip or none)" in run.error_message


def test_a_header_that_moved_the_key_refuses_the_spec_standing_in_for_it(alice, csv_server):
    # Given a sync import of an export that ends each line with a delimiter (the header's last
    # name is empty), its columns spec naming every column so that it stands in for the header
    first = "sku,name,price,\nA-1,Anvil,1,\nB-2,Bucket,2,\nC-3,Crate,3,\n"
    imp = make_import(alice, csv_server.serve("/p.csv", first), mode="sync", columns=SPEC)
    assert run_now(imp).rows_inserted == 3

    # When the partner's next export moves the key column
    csv_server.serve("/p.csv", "name,sku,price,\nAnvil,A-1,1,\nBucket,B-2,2,\nCrate,C-3,3,\n")
    run = run_now(imp)

    # Then the file is refused, saying so, and every record stays
    assert run.status == "failed" and sorted(records(imp)) == ["A-1", "B-2", "C-3"]
    assert run.error_message.startswith(
        "the header names column 1 'name' where the columns spec, which stands in for it"
    )


@pytest.mark.parametrize("second", ["sync", "upsert"])
def test_a_sync_import_is_its_datasets_one_writer(alice, second):
    # Given an import writing to dataset "shared" (the other one sync)
    make_import(alice, SOURCE, name="north", dataset="shared",
                mode="upsert" if second == "sync" else "sync")  # fmt: skip

    # When another import of it is saved
    answer = client_for(alice).post(
        f"{API}/imports/",
        {"name": "south", "source_url": SOURCE, "dataset": "shared", "key_column": "sku",
         "schedule_type": "interval", "interval_seconds": 3600, "mode": second},
        format="json",
    )  # fmt: skip

    # Then it is refused, saying why: each run deleted what the other wrote
    assert answer.status_code == 400
    [said] = answer.json()["errors"]["mode"]
    assert "deletes every record its file lacks" in said


@pytest.mark.django_db(transaction=True)
def test_two_imports_saved_at_once_cannot_both_write_a_dataset_one_of_them_syncs(alice, csv_server):
    # Given a dataset, and two API clients saving an import into it at the same moment: one
    # in mode sync, one in mode upsert
    url = csv_server.serve("/p.csv", PRODUCTS_CSV)
    services.get_or_create_dataset(alice, "shared")  # an existing, empty dataset
    first_saved = threading.Event()
    second_done = threading.Event()
    errors: list[BaseException] = []

    def save_sync() -> None:
        try:
            with transaction.atomic():
                make_import(alice, url, name="the sync one", dataset="shared", mode="sync")
                first_saved.set()
                second_done.wait(3)
        except BaseException as error:
            errors.append(error)
            first_saved.set()
        finally:
            connection.close()

    thread = threading.Thread(target=save_sync)
    thread.start()
    assert first_saved.wait(10)
    try:
        make_import(alice, url, name="the upsert one", dataset="shared", mode="upsert")
        refused = False
    except Exception:
        refused = True
    finally:
        second_done.set()
        thread.join(10)
    assert not errors, errors

    # Then the dataset has one writer, not a sync import deleting the other's records
    writers = list(
        ScheduledImport.objects.filter(dataset__name="shared").values_list("name", "mode")
    )
    assert refused or len(writers) == 1, (
        f"both saved: dataset 'shared' is written by {writers}; the sync import deletes the "
        "upsert import's records at every run"
    )
