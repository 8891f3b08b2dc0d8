"""SFTP with a password credential, and an SFTP server too slow for the download's deadline,
against an SFTP server in the test's process (sshd cannot check a password unprivileged)."""

import pytest

from tasks.errors import TransientImportError
from tasks.fetch import open_source
from tasks.source_options import source_options
from tests.factories import PRODUCTS_CSV, make_import
from tests.importer_support import records, run_now

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("encryption_key")]


def test_a_password_credential_logs_in_and_a_wrong_one_is_refused(alice, password_sftp_server):
    server = password_sftp_server
    server.put("products.csv", PRODUCTS_CSV)
    good = make_import(
        alice, server.url("products.csv"),
        credential={"kind": "password", "password": server.password},
    )  # fmt: skip
    bad = make_import(
        alice, server.url("products.csv"), name="bad", dataset="bad",
        credential={"kind": "password", "password": "not-it"},
    )  # fmt: skip

    landed, refused = run_now(good), run_now(bad)

    assert landed.status == "succeeded", landed.error_message
    assert len(records(good)) == 3
    assert (refused.status, refused.attempts) == ("failed", 1)
    assert "the SFTP server refused the credential for user 'feed'" in refused.error_message
    assert "not-it" not in refused.error_message


def test_an_sftp_download_past_its_deadline_is_cut_and_retried(
    alice, password_sftp_server, settings
):
    # Given a server that takes half a second per read, and a one-second deadline
    server = password_sftp_server
    server.put("products.csv", PRODUCTS_CSV * 2000)  # ~130 KiB: several reads
    server.delay = 0.5
    settings.FETCH_TOTAL_TIMEOUT_SECONDS = 1.0
    imp = make_import(
        alice, server.url("products.csv"),
        credential={"kind": "password", "password": server.password},
    )  # fmt: skip

    # When the file is read: the watchdog cuts the connection, a transient failure
    with pytest.raises(TransientImportError, match="took longer than 1s"):  # noqa: SIM117
        with open_source(imp.source_url, options=source_options(imp)) as (stream, _length):
            while stream.read(64 * 1024):
                pass
