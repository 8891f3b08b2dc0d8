"""A drop folder's, SFTP server's or web server's file that a partner is still writing is not
imported in part (tasks.whole_file): the run is retried until the file is whole, and a sync
import never deletes the records beyond where the writer had got to. A file written again
between a run's read and its move to processed/ stays for the next run."""

from __future__ import annotations

import functools
import http.server
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest

from schedules import processed_files, services
from schedules.models import ImportRun, Record
from tasks import drop_folder, runner, source_check
from tasks.byte_stream import CHUNK_BYTES
from tasks.errors import TransientImportError
from tests.bound_task import BoundTask as FakeTask
from tests.bound_task import Retried as FakeRetry
from tests.conftest import wait_for
from tests.drop_support import gzipped, put
from tests.factories import PRODUCTS_CSV, make_import
from tests.http_support import QuietHTTPServer
from tests.importer_support import records, run_now
from tests.reliability import wait_for_the_end

STILL_BEING_WRITTEN = "is still being written"


def product_rows(count: int, price: str = "1.00") -> bytes:
    lines = ["sku,name,price", *(f"S-{n:05d},Item {n},{price}" for n in range(count))]
    return ("\n".join(lines) + "\n").encode()


@contextmanager
def writing_slowly(path: Path, body: bytes, pieces: int, pause: float) -> Iterator[threading.Event]:
    """A partner writing `body` over `path` in place (truncated, then written piece by piece
    with `pause` seconds between pieces, as `cp` or an upload over a slow link does); the event
    is set once the first piece is on disk."""
    started, size = threading.Event(), -(-len(body) // pieces)

    def write() -> None:
        with path.open("wb") as out:
            for start in range(0, len(body), size):
                out.write(body[start : start + size])
                out.flush()
                started.set()
                time.sleep(pause)

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    try:
        yield started
    finally:
        writer.join()


def one_attempt(run: ImportRun) -> ImportRun:
    """One attempt of `run` in this process, as a worker's task makes it (a transient failure
    schedules a retry); the run as it stands after it."""
    with suppress(FakeRetry):
        runner.execute(run.pk, FakeTask())
    run.refresh_from_db()
    return run


# --- in this process --------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_file_that_grows_while_its_run_reads_it_is_not_taken(drop):
    # Given a file of several chunks, opened and read in part
    path = put(drop / "products.csv", product_rows(30_000))
    assert path.stat().st_size > 2 * CHUNK_BYTES
    with drop_folder.open_file(f"file://{path}") as (stream, _size):
        stream.read(CHUNK_BYTES)

        # When the writer adds to it before the run has read its end
        with path.open("ab") as out:
            out.write(b"S-99999,Late row,2.00\n")

        # Then reading its end fails, transiently, saying why
        with pytest.raises(TransientImportError, match=STILL_BEING_WRITTEN) as failure:
            stream.read()
    assert "it changed while the run read it" in str(failure.value)


@pytest.mark.django_db
def test_a_file_being_written_now_is_not_read_at_all(drop, settings):
    # Given a file its writer is adding to every fifth of a second
    settings.FILE_SETTLE_SECONDS = 1
    path = drop / "products.csv"
    with writing_slowly(path, product_rows(5000), pieces=20, pause=0.2) as started:
        started.wait(5)

        # When a run opens it, then it is refused before a byte of it is read (not read and
        # staged to its current end, only to be refused at that end)
        with (
            pytest.raises(TransientImportError, match=STILL_BEING_WRITTEN) as failure,
            drop_folder.open_file(f"file://{path}"),
        ):
            pytest.fail("the file was handed over to be read")
    assert "it changed within 1 s of its last change" in str(failure.value)


@pytest.mark.django_db
def test_a_sync_run_of_a_file_changed_again_within_the_settle_time_waits_for_the_whole(
    alice, drop, settings
):
    # Given a sync import whose dataset holds the 1,000 records of the last whole file
    settings.FILE_SETTLE_SECONDS = 2
    path = put(drop / "products.csv", product_rows(1000))
    imp = make_import(alice, f"file://{path}", mode="sync", max_retries=5)
    assert run_now(imp).rows_inserted == 1000

    error = a_sync_run_as_todays_file_is_written(imp, path)
    assert STILL_BEING_WRITTEN in error


def a_sync_run_as_todays_file_is_written(imp, path: Path) -> str:
    """When today's file is written over `path` as a run of the sync import `imp` (holding the
    1,000 records of product_rows) reads it: the run waits for a retry, no record deleted or
    changed, and its retry, once the file is whole and quiet, takes all of it. The first
    attempt's error."""
    with writing_slowly(path, product_rows(1000, price="2.00"), pieces=4, pause=0.7) as started:
        started.wait(5)
        run = one_attempt(ImportRun.objects.create(scheduled_import=imp, trigger="manual"))

        assert run.status == "retrying", run.error_message
        assert len(records(imp)) == 1000
        assert {r["price"] for r in records(imp).values()} == {"1.00"}

    retried = one_attempt(run)
    assert (retried.status, retried.rows_read, retried.rows_updated, retried.rows_deleted) == (
        "succeeded", 1000, 1000, 0
    ), retried.error_message  # fmt: skip
    assert {r["price"] for r in records(imp).values()} == {"2.00"}
    return run.error_details["attempts"][0]["error"]


@pytest.mark.django_db
def test_a_compressed_file_still_being_written_is_retried_not_failed_as_damaged(
    alice, drop, settings
):
    # Given a gzip file the partner is writing (its first pieces end before its compressed data)
    settings.FILE_SETTLE_SECONDS = 2
    path = drop / "products.csv.gz"
    imp = make_import(alice, f"file://{path}", max_retries=5)
    with writing_slowly(path, gzipped(product_rows(5000)), pieces=4, pause=0.7) as started:
        started.wait(5)

        # When a run reads it, then it waits for a retry: the file is not damaged, only unfinished
        run = one_attempt(ImportRun.objects.create(scheduled_import=imp, trigger="manual"))
        assert run.status == "retrying", run.error_message
        assert STILL_BEING_WRITTEN in run.error_details["attempts"][0]["error"]

    # And the retry, once it is whole, takes it
    run = one_attempt(run)
    assert (run.status, run.rows_read) == ("succeeded", 5000), run.error_message


@pytest.mark.django_db
def test_a_whole_file_written_a_moment_ago_or_dated_ahead_is_taken_after_one_look(
    alice, drop, settings
):
    # Given files written just now, one of them dated an hour ahead (a file server whose clock
    # is ahead of the worker's), neither written again
    settings.FILE_SETTLE_SECONDS = 1
    now = time.time()
    fresh = put(drop / "fresh.csv", PRODUCTS_CSV, mtime=now)
    ahead = put(drop / "ahead.csv", PRODUCTS_CSV, mtime=now + 3600)

    # When each is imported, then each is taken whole after one second's look
    for path in (fresh, ahead):
        started = time.monotonic()
        run = run_now(make_import(alice, f"file://{path}", name=path.name, dataset=path.name))
        assert (run.status, run.rows_inserted) == ("succeeded", 3), run.error_message
        assert time.monotonic() - started < 10  # one look, never a wait for the clock to catch up


@pytest.mark.django_db
def test_the_check_before_save_shows_a_file_written_a_moment_ago_at_once(alice, drop, settings):
    # Given a file delivered a moment ago, and a long settle time
    settings.FILE_SETTLE_SECONDS = 60
    path = put(drop / "products.csv", PRODUCTS_CSV, mtime=time.time())
    imp = make_import(alice, f"file://{path}")

    # When its source is checked, then its first rows are shown as they are, without a wait
    started = time.monotonic()
    checked = source_check.check_source(imp.pk)
    assert checked["ok"] and checked["rows"][0] == ["A-1", "Anvil", "10.50"], checked
    assert time.monotonic() - started < 30


@pytest.mark.django_db
@pytest.mark.usefixtures("encryption_key")
def test_an_sftp_file_still_being_written_is_not_taken(alice, sftp_server, settings):
    # Given an SFTP import of a file the partner's export is writing on their server
    settings.FILE_SETTLE_SECONDS = 2
    path = sftp_server.put("products.csv", product_rows(100))
    imp = make_import(alice, sftp_server.url("products.csv"), credential=sftp_server.credential)
    assert run_now(imp).rows_inserted == 100

    # When a run reads it between two pieces of the next version
    with writing_slowly(path, product_rows(2000, price="2.00"), pieces=4, pause=0.7) as started:
        started.wait(5)
        run = one_attempt(ImportRun.objects.create(scheduled_import=imp, trigger="manual"))

        # Then the run waits for a retry, and the dataset is as it was
        assert run.status == "retrying", run.error_message
        assert STILL_BEING_WRITTEN in run.error_details["attempts"][0]["error"]
        assert len(records(imp)) == 100

    # And once it is whole the retry takes it
    run = one_attempt(run)
    assert (run.status, run.rows_read) == ("succeeded", 2000), run.error_message


@pytest.mark.django_db
@pytest.mark.usefixtures("encryption_key")
def test_an_sftp_server_that_cannot_stat_an_open_file_is_asked_for_its_path(
    alice, password_sftp_server
):
    # Given an SFTP server that does not answer FSTAT (some gateways leave it out)
    server = password_sftp_server
    server.fstat = False
    server.put("products.csv", PRODUCTS_CSV)
    credential = {"kind": "password", "password": server.password}
    imp = make_import(alice, server.url("products.csv"), credential=credential)

    # When a run reads the file, then it looks at the file by its path, and takes it
    run = run_now(imp)
    assert (run.status, run.rows_inserted) == ("succeeded", 3), run.error_message


@pytest.mark.django_db
def test_a_file_written_again_after_its_run_read_it_is_not_filed_away(alice, drop):
    # Given a run that read a delivered file, whose import files its files away
    path = put(drop / "products.csv", PRODUCTS_CSV)
    imp = make_import(alice, f"file://{path}")
    run = run_now(imp)
    assert run.status == "succeeded"
    services.update_import(imp, move_processed=True)

    # When the next delivery lands under the same name before the run's file is filed away
    put(path, PRODUCTS_CSV + "D-4,Drill,99.00\n")
    moved = processed_files.move_processed(imp, run)

    # Then it stays for the next run, and the run says so
    assert moved == "" and path.exists() and not (drop / "processed").exists()
    run.refresh_from_db()
    assert "written again after the run read it" in run.error_details["not_moved"]
    assert "the next run of the import takes it again" in run.error_message
    # And the next run imports it, and that file is filed away
    later = run_now(imp)
    assert (later.status, later.rows_inserted) == ("succeeded", 1), later.error_message
    assert processed_files.move_processed(imp, later) == str(drop / "processed" / "products.csv")
    assert not path.exists()


# --- over HTTP: a web server serving the files of a folder -------------------------------------


@pytest.fixture
def web_folder(tmp_path) -> Iterator[tuple[Path, str, list[str]]]:
    """A folder (the partner's export folder), the URL a static web server serves it at, and
    the paths it was asked for: as nginx or Apache do, each answer has the file's size and
    modification time as it is when the request comes (Content-Length, Last-Modified), and
    the server's clock (Date)."""
    folder = tmp_path / "www"
    folder.mkdir()
    asked: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self) -> None:
            asked.append(self.path)
            super().do_GET()

        def log_message(self, *args) -> None:
            pass

    server = QuietHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield folder, f"http://127.0.0.1:{server.server_address[1]}", asked
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.django_db
def test_a_sync_run_of_a_file_a_web_server_serves_while_it_is_written_waits_for_the_whole(
    alice, web_folder, settings
):
    # Given a sync import of a file on a web server, whose dataset holds the last whole file's
    # 1,000 records
    settings.FILE_SETTLE_SECONDS = 2
    folder, base, _asked = web_folder
    path = put(folder / "products.csv", product_rows(1000))
    imp = make_import(alice, f"{base}/products.csv", mode="sync", max_retries=5)
    assert run_now(imp).rows_inserted == 1000

    error = a_sync_run_as_todays_file_is_written(imp, path)
    assert error.startswith(f"{base}/products.csv {STILL_BEING_WRITTEN} (it changed within 2 s")


@pytest.mark.django_db
def test_a_whole_file_a_web_server_changed_a_moment_ago_is_taken_after_one_look(
    alice, web_folder, settings
):
    # Given a whole file the web server's folder got a moment ago, not written again (HTTP
    # dates are whole seconds: the look comes one or two seconds later)
    settings.FILE_SETTLE_SECONDS = 2
    folder, base, asked = web_folder
    put(folder / "products.csv", PRODUCTS_CSV, mtime=time.time())
    imp = make_import(alice, f"{base}/products.csv")

    # When the check before save looks at it, then it shows its rows without a wait: one
    # request (counted, not timed: a timing is no assertion on a loaded machine)
    checked = source_check.check_source(imp.pk)
    assert checked["ok"] and checked["rows"][0] == ["A-1", "Anvil", "10.50"], checked
    assert asked == ["/products.csv"]

    # And a run takes it whole, after one look a second later
    started = time.monotonic()
    run = run_now(imp)
    assert (run.status, run.rows_inserted) == ("succeeded", 3), run.error_message
    assert asked == ["/products.csv"] * 3
    assert 0.5 < time.monotonic() - started < 10


# --- with a worker --------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.processes
def test_a_worker_waits_for_the_whole_file_before_a_sync_run_deletes_anything(
    alice, drop, processes
):
    # Given a sync import whose dataset holds yesterday's 2,000 records, and a worker
    path = put(drop / "products.csv", product_rows(2000))
    imp = make_import(
        alice, f"file://{path}", mode="sync", max_retries=8, retry_backoff_seconds=1,
        retry_backoff_max_seconds=1,
    )  # fmt: skip
    assert run_now(imp).rows_inserted == 2000
    processes.start("worker", IMPORT_DROP_DIRS=str(drop.parent), FILE_SETTLE_SECONDS="1")
    wait_for(lambda: "ready." in processes.logs(), 60, what="the worker\n" + processes.logs())

    # When a run is triggered while the partner's export writes today's file over it
    today = product_rows(2000, price="2.00")
    with writing_slowly(path, today, pieces=8, pause=0.5) as started:
        started.wait(5)
        run = services.enqueue_run(imp)
        wait_for(
            lambda: ImportRun.objects.filter(pk=run.pk, attempts__gte=1).exists(), 30,
            what="the run's first attempt\n" + processes.logs(),
        )  # fmt: skip
        fewest = min(Record.objects.filter(dataset=imp.dataset).count() for _ in range(3))

    # Then no attempt took part of the file: none deleted a record, and the run ends with it all
    run = wait_for_the_end(run, processes)
    assert (run.status, run.rows_read, run.rows_deleted) == ("succeeded", 2000, 0), (
        run.error_message, processes.logs(),
    )  # fmt: skip
    assert run.attempts >= 2
    assert STILL_BEING_WRITTEN in run.error_details["attempts"][0]["error"]
    assert fewest == 2000 == Record.objects.filter(dataset=imp.dataset).count()
    assert {r["price"] for r in records(imp).values()} == {"2.00"}


@pytest.mark.django_db(transaction=True)
def test_a_run_cancelled_while_its_file_settles_stops_within_a_second_or_two(alice, drop, settings):
    # The settle check slept its whole period, FILE_SETTLE_SECONDS, whatever the run was
    # asked meanwhile (carried from two rounds ago).
    from django.db import connection

    settings.FILE_SETTLE_SECONDS = 30
    # written just now: its run waits to see it quiet
    put(drop / "products.csv", PRODUCTS_CSV, mtime=time.time())
    imp = make_import(alice, f"file://{drop}/products.csv")
    run = ImportRun.objects.create(scheduled_import=imp, trigger=ImportRun.Trigger.MANUAL)

    def cancel_soon() -> None:
        try:
            time.sleep(1.5)
            services.cancel_run(ImportRun.objects.get(pk=run.pk))
        finally:
            connection.close()

    canceller = threading.Thread(target=cancel_soon)
    started = time.monotonic()
    canceller.start()
    runner.execute(run.pk)
    took = time.monotonic() - started
    canceller.join()

    run.refresh_from_db()
    assert run.status == "cancelled"
    assert took < 6, took
