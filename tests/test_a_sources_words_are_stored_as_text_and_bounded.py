"""What a server or a file says reaches the run log as text PostgreSQL can store, and bounded:
a NUL in a reason phrase or a validator header crashed the run as it was written (left
`running` for the sweep to call its worker lost; a good file never landed), and a wrong
file's 200 KB "column names" made a 4 MB message, a 12 MB page of three runs and an 8 MB
alert e-mail. File names a sender chose are named in words, and cannot forge log lines."""

from __future__ import annotations

import os
import time

import pytest

from schedules.models import NotificationDelivery
from tasks import webhooks
from tests.api_support import API, client_for
from tests.factories import PRODUCTS_CSV, make_import
from tests.importer_support import run_now

pytestmark = pytest.mark.django_db

PRODUCTS = "sku,name\nA-1,Anvil\nB-2,Bucket\n"
LONG_HEADER = ",".join(f"col{i}_" + "x" * 200_000 for i in range(20)) + "\n1,2\n"


@pytest.mark.parametrize("status", [404, 503])
def test_a_reason_phrase_holding_a_nul_is_said(alice, csv_server, status):
    url = csv_server.serve("/p.csv", b"x", status=status, reason="Not\x00Found")
    imp = make_import(alice, url, max_retries=0)

    run = run_now(imp)

    assert run.status == "failed"
    assert run.error_message.endswith(f"HTTP {status} Not\\x00Found")


@pytest.mark.parametrize(
    "header", [{"ETag": '"v1\x00x"'}, {"Last-Modified": "Tue, 01 Dec 2026 00:00:00\x00 GMT"}]
)
def test_a_validator_header_holding_a_nul_leaves_the_run_good(alice, csv_server, header):
    imp = make_import(alice, csv_server.serve("/p.csv", PRODUCTS, headers=header))

    assert run_now(imp).status == "succeeded"


def test_a_long_reason_phrase_is_cut(alice, csv_server):
    imp = make_import(
        alice, csv_server.serve("/p.csv", b"x", status=404, reason="A" * 60_000), max_retries=0
    )

    run = run_now(imp)

    assert run.status == "failed" and len(run.error_message) < 300, len(run.error_message)


def test_a_wrong_files_long_column_names_make_a_message_of_a_few_kilobytes_everywhere(
    alice, csv_server, mailoutbox
):
    # Given a source serving something else on one long line, three runs, an alert after one
    imp = make_import(
        alice, csv_server.serve("/p.csv", LONG_HEADER), max_retries=0, alert_after_failures=1
    )
    runs = [run_now(imp) for _ in range(3)]

    # Then each message names the columns, each cut, and the API page and e-mails stay small
    assert {run.status for run in runs} == {"failed"}
    assert "is not in the file's columns (col0_xxx" in runs[0].error_message
    assert len(runs[0].error_message) < 5_000, len(runs[0].error_message)
    assert len(client_for(alice).get(f"{API}/runs/").content) < 50_000
    for delivery in NotificationDelivery.objects.filter(channel="email"):
        webhooks.deliver(delivery.pk)
    assert mailoutbox and all(len(mail.body) < 20_000 for mail in mailoutbox)


@pytest.mark.django_db(transaction=True)
def test_a_delivery_named_in_latin1_is_refused_in_words(alice, drop):
    # Given a sender's delivery named in Latin-1 (`products_été.csv`)
    with open(os.path.join(os.fsencode(drop), "products_été.csv".encode("latin-1")), "wb") as f:
        f.write(PRODUCTS_CSV.encode())
    imp = make_import(alice, f"file://{drop}/products_*.csv")

    run = run_now(imp)

    # Then the run says which file and what to do (it was "an unexpected error in importbeat")
    assert run.status == "failed"
    assert run.error_message == (
        f"the file products_\\xe9t\\xe9.csv in {drop} has a name that is not UTF-8 text: rename "
        "it (a run records the name of the file it imports)"
    )


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("encryption_key")
def test_an_sftp_folder_holding_another_file_named_in_latin1_is_read(alice, sftp_server):
    # Given a partner's SFTP folder with the delivery and, beside it, a file whose name is
    # Latin-1: paramiko's listing raised on it, and every run failed
    sftp_server.put("products_1.csv", PRODUCTS_CSV, time.time() - 300)
    other = sftp_server.files / os.fsdecode("prix_été.csv".encode("latin-1"))
    other.write_bytes(b"x")
    other.chmod(0o644)
    imp = make_import(alice, sftp_server.url("products_*.csv"), credential=sftp_server.credential)

    assert run_now(imp).status == "succeeded"


@pytest.mark.django_db(transaction=True)
def test_a_delivery_named_with_a_line_break_forges_no_log_line(alice, drop, caplog):
    forged = "2026-12-06 03:00:00,000 ERROR importbeat.runs run finished import=1 status=failed"
    (drop / f"products_1.csv\n{forged}\n.csv").write_text(PRODUCTS_CSV)
    imp = make_import(alice, f"file://{drop}/products_*", move_processed=True)

    assert run_now(imp).status == "succeeded"
    assert [r.getMessage() for r in caplog.records if "\n" in r.getMessage()] == []


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("encryption_key")
def test_an_older_match_named_in_latin1_leaves_the_newest_to_import(alice, sftp_server, drop):
    # The run takes the newest match; last month's file named in Latin-1 failed it all the same
    old_name = os.fsdecode("products_été.csv".encode("latin-1"))
    for folder in (sftp_server.files, drop):
        old = folder / old_name
        old.write_bytes(PRODUCTS_CSV.encode())
        old.chmod(0o644)
        os.utime(old, (time.time() - 86_400 * 30,) * 2)
    sftp_server.put("products_2.csv", PRODUCTS_CSV, time.time() - 300)
    (drop / "products_2.csv").write_text(PRODUCTS_CSV)
    by_sftp = make_import(
        alice, sftp_server.url("products_*.csv"), credential=sftp_server.credential
    )
    by_drop = make_import(alice, f"file://{drop}/products_*.csv", name="dropped", dataset="d")

    for imp in (by_sftp, by_drop):
        run = run_now(imp)
        assert run.status == "succeeded", run.error_message
        assert run.source_file.endswith("products_2.csv")


def test_a_validator_is_sent_back_as_the_server_sent_it(alice, csv_server):
    # An ETag holding UTF-8 bytes ("v1-€", read as Latin-1 text) was stored escaped and sent
    # back altered: never a 304, the file downloaded at every run
    etag = '"v1-€"'.encode().decode("latin-1")
    imp = make_import(alice, csv_server.serve("/p.csv", PRODUCTS_CSV, etag=etag))
    run_now(imp)

    run_now(imp)

    assert csv_server.requests[-1][1].get("If-None-Match") == etag
