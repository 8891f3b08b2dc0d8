"""SFTP sources against a real OpenSSH server: the host key is pinned once and never trusted
anew, a glob takes the newest file, an unchanged file is not read again, and every failure is
classified (issue 14)."""

import time

import pytest

from schedules.models import host_key_fingerprint
from tasks.errors import TransientImportError
from tasks.fetch import open_source
from tasks.source_options import source_options
from tests.api_support import API, client_for
from tests.factories import PRODUCTS_CSV, make_import
from tests.importer_support import records, run_now

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("encryption_key")]


def _import(alice, server, path="products.csv", **fields):
    fields.setdefault("credential", server.credential)
    return make_import(alice, server.url(path), **fields)


def _server_key_fingerprint(server) -> str:
    kind, blob = (server.root / "host_key.pub").read_text().split()[:2]
    return host_key_fingerprint(f"{kind} {blob}")


def test_an_sftp_import_pins_the_host_key_on_its_first_run_and_lands_the_rows(alice, sftp_server):
    # Given a file on an SFTP server and an import with a private key (and its passphrase)
    sftp_server.put("products.csv", PRODUCTS_CSV)
    imp = _import(alice, sftp_server)
    assert imp.sftp_host_key == ""

    # When it runs
    run = run_now(imp)

    # Then the rows landed, the run took that file, and the server's key is pinned
    assert (run.status, run.rows_inserted, run.error_message) == ("succeeded", 3, "")
    assert run.source_file == str(sftp_server.files / "products.csv")
    assert records(imp)["C-3"] == {"sku": "C-3", "name": "Crate, large", "price": "7.00"}
    imp.refresh_from_db()
    assert imp.host_key_fingerprint == _server_key_fingerprint(sftp_server)
    assert run.bytes_read == run.bytes_total == len(PRODUCTS_CSV)


def test_a_changed_host_key_fails_the_run_until_a_user_accepts_it(alice, sftp_server):
    # Given an import whose first run pinned the server's key
    sftp_server.put("products.csv", PRODUCTS_CSV)
    imp = _import(alice, sftp_server)
    assert run_now(imp).status == "succeeded"
    old = _server_key_fingerprint(sftp_server)

    # When the server comes back with another key
    sftp_server.new_host_key()
    new = _server_key_fingerprint(sftp_server)
    refused = run_now(imp)

    # Then the run fails at once (no retry), naming both fingerprints, and keeps the old key
    assert (refused.status, refused.attempts) == ("failed", 1)
    assert old in refused.error_message and new in refused.error_message
    assert "host key changed" in refused.error_message
    client = client_for(alice)
    shown = client.get(f"{API}/imports/{imp.pk}/").json()
    assert (shown["host_key_fingerprint"], shown["offered_host_key_fingerprint"]) == (old, new)
    # ... and a second run is refused too: no trust on use
    assert run_now(imp).status == "failed"

    # When alice accepts the new key
    accepted = client.post(f"{API}/imports/{imp.pk}/accept-host-key")

    # Then it is pinned, the history says so, and the import runs again
    assert accepted.status_code == 200, accepted.content
    pinned = accepted.json()
    assert (pinned["host_key_fingerprint"], pinned["offered_host_key_fingerprint"]) == (new, "")
    assert run_now(imp).status == "succeeded"
    history = client.get(f"{API}/imports/{imp.pk}/history/").json()["results"]
    assert history[0]["action"] == "host key accepted"
    assert history[0]["by"] == "alice"
    # ... and there is nothing left to accept
    assert client.post(f"{API}/imports/{imp.pk}/accept-host-key").status_code == 409


def test_a_glob_takes_the_newest_matching_file_and_the_run_records_it(alice, sftp_server):
    # Given three deliveries, the newest not the last by name, and a file that does not match
    now = time.time()
    sftp_server.put("products_2.csv", PRODUCTS_CSV.replace("Anvil", "Old anvil"), now - 300)
    sftp_server.put("products_1.csv", PRODUCTS_CSV.replace("Anvil", "New anvil"), now - 10)
    sftp_server.put("products_0.csv", PRODUCTS_CSV.replace("Anvil", "Older anvil"), now - 900)
    sftp_server.put("other.csv", PRODUCTS_CSV.replace("Anvil", "Other"), now)
    imp = _import(alice, sftp_server, "products_*.csv")

    # When it runs
    run = run_now(imp)

    # Then it took the newest match and says which
    assert run.status == "succeeded", run.error_message
    assert records(imp)["A-1"]["name"] == "New anvil"
    assert run.source_file == str(sftp_server.files / "products_1.csv")
    detail = client_for(alice).get(f"{API}/runs/{run.pk}/").json()
    assert detail["source_file"] == run.source_file


def test_a_glob_skips_hidden_files_as_in_a_drop_folder(alice, sftp_server):
    # Given a delivery, and a newer hidden file: an upload in progress under a temporary name
    now = time.time()
    sftp_server.put("products.csv", PRODUCTS_CSV, now - 60)
    sftp_server.put(".products.csv", "sku,name,price\nA-1,Half an upl", now - 30)
    imp = _import(alice, sftp_server, "*.csv")

    # When it runs, then it takes the visible file, as the shell's `*` and a drop folder would
    run = run_now(imp)
    assert (run.status, run.rows_inserted) == ("succeeded", 3), run.error_message
    assert run.source_file == str(sftp_server.files / "products.csv")
    # (and a pattern that starts with a dot names hidden files on purpose)
    dotted = run_now(_import(alice, sftp_server, ".prod*", name="dot", dataset="dot"))
    assert dotted.source_file == str(sftp_server.files / ".products.csv")


def test_an_unchanged_sftp_file_is_not_read_again(alice, sftp_server):
    # Given an import that ran once
    path = sftp_server.put("products.csv", PRODUCTS_CSV)
    imp = _import(alice, sftp_server)
    first = run_now(imp)

    # When it runs again on the same file (same size and mtime)
    second = run_now(imp)

    # Then nothing was downloaded, and the counts repeat
    assert (second.status, second.bytes_read, second.rows_unchanged) == ("succeeded", 0, 3)
    assert second.file_digest == first.file_digest

    # When the file changes (new mtime), it is read again
    sftp_server.put("products.csv", PRODUCTS_CSV + "D-4,Drum,1.00\n", path.stat().st_mtime + 60)
    third = run_now(imp)
    assert (third.status, third.rows_inserted) == ("succeeded", 1)


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("wrong key", "the SFTP server refused the credential for user"),
        ("too big", "larger than the 10-byte limit"),
    ],
)
def test_sftp_failures_that_retrying_would_not_fix_fail_at_once(
    alice, sftp_server, settings, case, expected
):
    sftp_server.put("products.csv", PRODUCTS_CSV)
    path, credential = "products.csv", sftp_server.credential
    if case == "wrong key":
        other = sftp_server.root / "other_key"
        from tests.sftp_support import _keygen

        credential = {"kind": "private_key", "private_key": _keygen(other)}
    if case == "too big":
        settings.MAX_IMPORT_BYTES = 10
    imp = _import(alice, sftp_server, path, credential=credential, max_retries=3)

    run = run_now(imp)

    assert (run.status, run.attempts) == ("failed", 1)
    assert expected in run.error_message


def test_a_file_not_uploaded_yet_is_retried_and_a_glob_matching_nothing_skips(alice, sftp_server):
    sftp_server.put("products.csv", PRODUCTS_CSV)
    missing = _import(alice, sftp_server, "gone.csv", max_retries=0)
    nothing = _import(alice, sftp_server, "nothing_*.csv", name="glob", dataset="glob")

    # A fixed path not uploaded yet: a failure worth retrying
    with pytest.raises(TransientImportError, match=r"no such file on the SFTP server \(yet\)"):  # noqa: SIM117
        with open_source(missing.source_url, options=source_options(missing)):
            pass
    # A glob matching nothing: the run is skipped, and the import keeps no failure
    run = run_now(nothing)
    assert run.status == "skipped" and "no file on the SFTP server matches" in run.error_message
    nothing.refresh_from_db()
    assert nothing.consecutive_failures == 0


def test_an_sftp_server_that_does_not_answer_is_a_transient_failure(alice, sftp_server):
    # Given an import of a server that is down
    imp = _import(alice, sftp_server)
    sftp_server.stop()

    # When its file is fetched: a failure worth retrying (the runner retries these)
    with pytest.raises(TransientImportError) as failed:  # noqa: SIM117
        with open_source(imp.source_url, options=source_options(imp)):
            pass

    assert "cannot reach 127.0.0.1" in str(failed.value)
    assert "connection refused" in str(failed.value)


def test_sftp_hosts_obey_the_private_address_rule(alice, sftp_server, settings):
    sftp_server.put("products.csv", PRODUCTS_CSV)
    imp = _import(alice, sftp_server)
    settings.ALLOWED_PRIVATE_HOSTS = ["127.0.0.1:80"]  # not the SFTP server's port

    run = run_now(imp)

    assert run.status == "failed"
    assert "a private address that is not allowed" in run.error_message
    assert "Connection from" not in sftp_server.logs()


def test_the_check_before_save_shows_the_host_key_and_the_first_rows(alice, sftp_server):
    # Given an SFTP source not saved yet
    sftp_server.put("products_7.csv", PRODUCTS_CSV)
    body = {
        "name": "p", "source_url": sftp_server.url("products_*.csv"), "dataset": "p",
        "key_column": "sku", "schedule_type": "interval", "interval_seconds": 3600,
        "credential": sftp_server.credential,
    }  # fmt: skip

    # When alice checks it (a worker answers: here, eagerly in-process)
    from tasks import source_check

    result = source_check.check_fields(_check_key(alice, body))

    # Then the answer shows the server's key, the file a run would take, and the rows
    assert result["ok"], result
    assert result["host_key_fingerprint"] == _server_key_fingerprint(sftp_server)
    assert result["source_file"].endswith("products_7.csv")
    assert result["rows"][0] == ["A-1", "Anvil", "10.50"]


def _check_key(alice, body) -> str:
    """What `POST /imports/check` sends the worker for `body` (schedules.api.views._check): the
    key its fields wait under."""
    from rest_framework.test import APIRequestFactory

    from schedules import unsaved_checks
    from schedules.api.serializers import ImportSerializer
    from schedules.source_check import unsaved_fields

    request = APIRequestFactory().post("/")
    request.user = alice
    serializer = ImportSerializer(data=body, context={"request": request})
    assert serializer.is_valid(), serializer.errors
    return unsaved_checks.put(unsaved_fields(serializer.preview()), wait=10)


def test_a_source_moved_to_another_server_forgets_the_pinned_host_key(alice, sftp_server):
    # Given an import whose key is pinned
    sftp_server.put("products.csv", PRODUCTS_CSV)
    imp = _import(alice, sftp_server)
    assert run_now(imp).status == "succeeded"
    client = client_for(alice)

    # When its path changes on the same server, the key stays; when the server changes, it goes
    same = client.patch(f"{API}/imports/{imp.pk}/", {"source_url": sftp_server.url("p.csv")})
    elsewhere = sftp_server.url("p.csv").replace("127.0.0.1", "sftp.example.com")
    moved = client.patch(
        f"{API}/imports/{imp.pk}/",
        {"source_url": elsewhere, "credential": sftp_server.credential},
        format="json",
    )

    assert same.json()["host_key_fingerprint"] == _server_key_fingerprint(sftp_server)
    assert moved.status_code == 200, moved.content
    assert moved.json()["host_key_fingerprint"] == ""


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sftp://127.0.0.1/out/p.csv", "names its user"),
        ("sftp://u:pw@127.0.0.1/out/p.csv", "not in the URL"),
        ("sftp://u@127.0.0.1/out/", "names a file"),
        ("sftp://u@127.0.0.1/out/p_?.csv", "no ? or #"),
        ("sftp://u@127.0.0.1/out_*/p.csv", "only be in the file name"),
        ("ftp://u@127.0.0.1/out/p.csv", "the source must be one of"),
    ],
)
def test_an_sftp_url_that_cannot_work_is_refused_when_saved(alice, url, expected):
    body = {
        "name": "p", "source_url": url, "dataset": "p", "key_column": "sku",
        "schedule_type": "interval", "interval_seconds": 3600,
    }  # fmt: skip

    answer = client_for(alice).post(f"{API}/imports/", body, format="json")

    assert answer.status_code == 400
    assert expected in str(answer.json()["errors"]["source_url"])


def test_the_admins_test_source_pins_the_first_key_and_its_button_accepts_a_new_one(
    admin_client, alice, sftp_server
):
    from tasks.source_check import check_source

    # Given a saved SFTP import that never ran
    sftp_server.put("products.csv", PRODUCTS_CSV)
    imp = _import(alice, sftp_server)

    # When the admin's Test source checks it (on a worker: here, in-process), it pins the key
    first = check_source(imp.pk)
    imp.refresh_from_db()
    assert first["ok"], first
    assert imp.host_key_fingerprint == first["host_key_fingerprint"] != ""

    # When the server's key changes, the check says so and the page offers the button
    sftp_server.new_host_key()
    changed = check_source(imp.pk)
    assert "host key changed" in changed["problems"][0]
    page = admin_client.get(f"/admin/schedules/scheduledimport/{imp.pk}/change/").content
    assert b"Accept new host key" in page

    # When an admin presses it, the new key is pinned
    pressed = admin_client.post(f"/admin/schedules/scheduledimport/{imp.pk}/accept_host_key/")
    assert pressed.status_code == 302
    imp.refresh_from_db()
    assert (imp.host_key_fingerprint, imp.sftp_offered_host_key) == (
        _server_key_fingerprint(sftp_server), ""
    )  # fmt: skip
    assert check_source(imp.pk)["ok"]
