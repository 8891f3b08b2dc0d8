"""The file a dataset already holds, fetched again: recognised by its digest, nothing staged.

The shortcut must never hide a change: a different file, different settings, another import
or a hand-made edit in between, or the previous run gone, all send the file through the merge.
"""

import hashlib
import logging
from email.utils import parsedate_to_datetime

import pytest
from django.db import connection

from schedules import services
from schedules.models import Dataset, ImportRun, Record
from tasks.engine.digest import applied_key
from tests.conftest import Route
from tests.drop_support import put, zipped
from tests.factories import PRODUCTS_CSV, make_import
from tests.importer_support import (
    records,
    row_errors,
    run_now,
)

pytestmark = pytest.mark.django_db

# Line 3 has a bad price, A-1 repeats on line 5 (its line 2 is superseded).
BODY = "sku,name,price\nA-1,Anvil,1\nB-2,Bucket,cheap\nC-3,Crate,3\nA-1,Anvil XL,4\n"
COLUMNS = [{"name": "price", "type": "int"}]
RECOGNISED = "nothing to write"


def row_versions(imp) -> dict[str, str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT key, xmin::text FROM schedules_record WHERE dataset_id = %s",
            [imp.dataset_id],
        )
        return dict(cursor.fetchall())


def recognised(caplog) -> bool:
    return any(RECOGNISED in r.getMessage() for r in caplog.records)


def test_the_same_file_again_repeats_the_counts_and_writes_nothing(alice, csv_server, caplog):
    # Given a file with a bad row and a repeated key, imported once
    imp = make_import(alice, csv_server.serve("/p.csv", BODY), columns=COLUMNS)
    first = run_now(imp)
    before = row_versions(imp)

    # When the same bytes are fetched again
    with caplog.at_level(logging.INFO, logger="importbeat.importer"):
        again = run_now(imp)

    # Then the run recognises the file and counts what importing it again would count
    assert recognised(caplog)
    assert (first.status, again.status) == ("partial", "partial")
    assert first.file_digest == again.file_digest == hashlib.sha256(BODY.encode()).hexdigest()
    assert (first.rows_read, first.rows_inserted, first.rows_failed) == (4, 2, 2)
    assert (again.rows_read, again.rows_inserted, again.rows_updated) == (4, 0, 0)
    assert (again.rows_unchanged, again.rows_deleted, again.rows_failed) == (2, 0, 2)
    assert row_errors(again) == row_errors(first) != []
    assert again.bytes_read == again.bytes_total == len(BODY)
    # And no record was written
    assert row_versions(imp) == before
    assert Dataset.objects.get(pk=imp.dataset_id).applied_run_id == first.pk


def test_a_third_fetch_still_counts_every_row_unchanged(alice, csv_server):
    imp = make_import(alice, csv_server.serve("/p.csv", BODY), columns=COLUMNS)
    run_now(imp)
    run_now(imp)

    third = run_now(imp)

    assert (third.rows_inserted, third.rows_unchanged, third.rows_failed) == (0, 2, 2)


def test_a_different_file_is_merged(alice, csv_server, caplog):
    imp = make_import(alice, csv_server.serve("/p.csv", BODY), columns=COLUMNS)
    run_now(imp)
    csv_server.serve("/p.csv", BODY.replace("Crate,3", "Crate,30"))

    with caplog.at_level(logging.INFO, logger="importbeat.importer"):
        run = run_now(imp)

    assert not recognised(caplog)
    assert (run.rows_updated, run.rows_unchanged) == (1, 1)
    assert records(imp)["C-3"]["price"] == 30
    # And the new file is the one the dataset now holds
    dataset = Dataset.objects.get(pk=imp.dataset_id)
    assert dataset.applied_digest == applied_key(imp, run.file_digest)


def test_the_same_file_under_other_settings_is_merged(alice, csv_server):
    # Given a file imported with price as text
    imp = make_import(alice, csv_server.serve("/p.csv", BODY))
    run_now(imp)
    assert records(imp)["C-3"]["price"] == "3"

    # When the import now types price as int, and the same bytes are fetched
    services.update_import(imp, columns=COLUMNS)
    run = run_now(imp)

    # Then the file was merged again under the new settings
    assert records(imp)["C-3"]["price"] == 3
    assert run.rows_updated == 2 and run.rows_failed == 2


def test_another_import_writing_the_dataset_in_between_sends_the_file_through_the_merge(
    alice, csv_server
):
    # Given two imports into one dataset, and the first one's file imported
    first = make_import(alice, csv_server.serve("/a.csv", "sku,name\nA-1,Anvil\n"))
    second = make_import(
        alice, csv_server.serve("/b.csv", "sku,name\nA-1,Axe\n"), name="other", dataset="products"
    )
    assert first.dataset_id == second.dataset_id
    run_now(first)

    # When the other import rewrites the record, then the first file is fetched again
    run_now(second)
    run = run_now(first)

    # Then the first file was merged again, not taken for the one the dataset holds
    assert (run.rows_updated, run.rows_unchanged) == (1, 0)
    assert records(first) == {"A-1": {"sku": "A-1", "name": "Anvil"}}


def test_a_record_deleted_by_hand_is_imported_again(alice, csv_server):
    imp = make_import(alice, csv_server.serve("/p.csv", BODY), columns=COLUMNS)
    run_now(imp)

    services.delete_records(Record.objects.filter(dataset=imp.dataset, key="C-3"))
    run = run_now(imp)

    assert (run.rows_inserted, run.rows_unchanged) == (1, 1)
    assert "C-3" in records(imp)


def test_when_the_run_that_imported_the_file_is_gone_the_file_is_merged(alice, csv_server, caplog):
    # Given the run that imported the file deleted (retention)
    imp = make_import(alice, csv_server.serve("/p.csv", BODY), columns=COLUMNS)
    first = run_now(imp)
    ImportRun.objects.filter(pk=first.pk).delete()

    # When the same file is fetched again
    with caplog.at_level(logging.INFO, logger="importbeat.importer"):
        run = run_now(imp)

    # Then there are no counts to repeat: the merge counts them, finding nothing changed
    assert not recognised(caplog)
    assert (run.rows_inserted, run.rows_unchanged, run.rows_failed) == (0, 2, 2)
    assert Dataset.objects.get(pk=imp.dataset_id).applied_run_id == run.pk


# --- conditional requests: a server that says "not modified" is not asked for the file ------

ETAG = '"v1"'
LAST_MODIFIED = "Mon, 23 Nov 2026 02:00:00 GMT"


def test_a_server_answering_not_modified_is_not_asked_for_the_file(alice, csv_server, caplog):
    # Given a file served with an ETag, imported once
    url = csv_server.serve("/p.csv", BODY, etag=ETAG)
    imp = make_import(alice, url, columns=COLUMNS)
    first = run_now(imp)
    assert first.source_etag == ETAG

    # When the import runs again
    with caplog.at_level(logging.INFO, logger="importbeat.importer"):
        again = run_now(imp)

    # Then it asked only for a changed file, got 304, and repeated the counts
    assert csv_server.requests[-1][1].get("If-None-Match") == ETAG
    assert any("the server says the file is unchanged" in r.getMessage() for r in caplog.records)
    assert (again.status, again.rows_read, again.rows_unchanged, again.rows_failed) == (
        "partial", 4, 2, 2,
    )  # fmt: skip
    assert again.file_digest == first.file_digest and again.source_etag == ETAG
    assert row_errors(again) == row_errors(first)


def test_last_modified_is_used_when_there_is_no_etag(alice, csv_server):
    url = csv_server.serve("/p.csv", BODY, last_modified=LAST_MODIFIED)
    imp = make_import(alice, url, columns=COLUMNS)
    run_now(imp)

    again = run_now(imp)

    assert csv_server.requests[-1][1].get("If-Modified-Since") == LAST_MODIFIED
    assert again.rows_unchanged == 2 and again.source_last_modified == LAST_MODIFIED


def test_a_new_version_on_the_server_is_fetched_and_merged(alice, csv_server):
    imp = make_import(alice, csv_server.serve("/p.csv", BODY, etag=ETAG), columns=COLUMNS)
    run_now(imp)

    csv_server.serve("/p.csv", BODY.replace("Crate,3", "Crate,30"), etag='"v2"')
    run = run_now(imp)

    assert (run.rows_updated, run.source_etag) == (1, '"v2"')
    assert records(imp)["C-3"]["price"] == 30


def test_changed_settings_fetch_the_file_without_asking_whether_it_changed(alice, csv_server):
    # Given a file imported under one set of settings, served with an ETag
    imp = make_import(alice, csv_server.serve("/p.csv", BODY, etag=ETAG))
    run_now(imp)

    # When the settings change, the unchanged file must be merged again under them
    services.update_import(imp, columns=COLUMNS)
    run = run_now(imp)

    assert "If-None-Match" not in csv_server.requests[-1][1]
    assert run.rows_updated == 2 and records(imp)["C-3"]["price"] == 3


def test_a_not_modified_answer_to_a_plain_request_fails_the_run(alice, csv_server):
    imp = make_import(alice, csv_server.serve("/p.csv", b"", status=304))

    run = run_now(imp)

    assert run.status == "failed" and "HTTP 304" in run.error_message


def test_a_changed_file_that_copy_rejects_is_parsed_from_the_download(alice, csv_server):
    # Given a dataset noted with its file, so the next run downloads before staging
    imp = make_import(alice, csv_server.serve("/p.csv", BODY), columns=COLUMNS)
    run_now(imp)

    # When the new file has a row with too few fields (COPY refuses it: the Python path runs)
    csv_server.serve("/p.csv", BODY.replace("C-3,Crate,3", "C-3,Crate") + "D-4,Drill,5\n")
    run = run_now(imp)

    # Then the whole file was parsed from the download: the short row reported, the rest landed
    assert (4, None, "expected 3 fields, found 2") in row_errors(run)
    assert (run.rows_read, run.rows_inserted) == (5, 1)
    assert set(records(imp)) == {"A-1", "C-3", "D-4"}


class DateRoute(Route):
    """A server comparing If-Modified-Since as Apache, nginx and http.server do: 304 when its
    file is not newer than the date asked about."""

    def not_modified(self, request_headers) -> bool:
        since = request_headers.get("If-Modified-Since")
        if not (since and self.last_modified):
            return False
        return parsedate_to_datetime(self.last_modified) <= parsedate_to_datetime(since)


OTHER = "sku,name,price\nZ-9,Zither,1.00\n"


def test_a_new_source_url_is_fetched_whole_not_asked_about_the_old_files_version(alice, csv_server):
    # The old URL's Last-Modified went to the new one, which (older) answered 304: the run
    # was "unchanged", and the dataset kept the old file's rows at every tick
    csv_server.routes["/new.csv"] = DateRoute(
        PRODUCTS_CSV.encode(), last_modified="Tue, 01 Dec 2026 10:00:00 GMT"
    )
    csv_server.routes["/old.csv"] = DateRoute(
        OTHER.encode(), last_modified="Mon, 30 Nov 2026 10:00:00 GMT"
    )
    imp = make_import(alice, csv_server.base_url + "/new.csv", mode="sync")
    assert run_now(imp).status == "succeeded"

    services.update_import(imp, source_url=csv_server.base_url + "/old.csv")
    run = run_now(imp)

    assert (run.status, run.rows_inserted, run.rows_deleted) == ("succeeded", 1, 3)
    assert sorted(records(imp)) == ["Z-9"]


def test_another_member_of_the_same_zip_is_read(alice, drop):
    put(drop / "both.zip", zipped({"a.csv": PRODUCTS_CSV, "b.csv": OTHER}))
    imp = make_import(alice, f"file://{drop}/both.zip", source_member="a.csv")
    assert run_now(imp).status == "succeeded"

    services.update_import(imp, source_member="b.csv")
    run = run_now(imp)

    assert (run.status, run.rows_inserted) == ("succeeded", 1)
    assert "Z-9" in records(imp)


def test_a_304_to_a_request_that_named_no_version_is_no_answer(alice, csv_server):
    # (from a proxy that misbehaves) it was read as "the server says the file is unchanged"
    url = csv_server.serve("/p.csv", PRODUCTS_CSV)  # no validators
    imp = make_import(alice, url)
    assert run_now(imp).status == "succeeded"
    csv_server.routes["/p.csv"] = Route(b"", status=304)

    run = run_now(imp)

    assert run.status == "failed"
    assert "304" in run.error_message


@pytest.mark.django_db(transaction=True)
def test_the_same_file_again_is_merged_when_another_import_wrote_while_it_came(alice, csv_server):
    # Given import B's file applied to a dataset another import, A, writes to as well
    import threading

    body = "sku,v\nk1,b\n" + "".join(f"k{i},b\n" for i in range(2, 20_000))
    a_done, b_waits = threading.Event(), threading.Event()

    def hold_after_first_chunk(sent: int) -> None:
        if b_waits.is_set():
            return
        b_waits.set()
        a_done.wait(30)

    b = make_import(alice, csv_server.serve("/b.csv", body), name="b", dataset="shared")
    assert run_now(b).rows_inserted == 20_000 - 1
    a = make_import(alice, csv_server.serve("/a.csv", "sku,v\nk1,a\n"), name="a", dataset="shared")
    csv_server.serve("/b.csv", body, after_chunk=hold_after_first_chunk)

    # When B runs again with the same file, and A merges into the dataset while B's file comes
    ended = {}

    def b_again() -> None:
        try:
            ended["b"] = run_now(b)
        finally:
            connection.close()

    later = threading.Thread(target=b_again)
    later.start()
    assert b_waits.wait(30)
    assert run_now(a).rows_updated == 1
    a_done.set()
    later.join(60)

    # Then B's file goes through the merge (it was taken for the file applied last, the
    # dataset unchanged since, and nothing was written), and the dataset ends as it says
    assert (ended["b"].status, ended["b"].rows_updated) == ("succeeded", 1)
    assert Record.objects.get(dataset=b.dataset, key="k1").data == {"sku": "k1", "v": "b"}
