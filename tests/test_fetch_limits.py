"""Downloads are bounded: a size cap, a connect timeout and a read timeout."""

import socket

import pytest

from tasks.errors import TransientImportError
from tasks.fetch import open_source
from tests.factories import make_import
from tests.importer_support import (
    run_now,
)

pytestmark = pytest.mark.django_db


def test_a_file_over_max_import_bytes_fails_naming_the_limit(alice, csv_server, settings):
    settings.MAX_IMPORT_BYTES = 1000
    body = "sku,name\n" + "".join(f"K-{i},name {i}\n" for i in range(500))
    imp = make_import(alice, csv_server.serve("/p.csv", body))

    run = run_now(imp)

    assert run.status == "failed"
    assert "larger than the 1000-byte limit (MAX_IMPORT_BYTES)" in run.error_message
    assert imp.dataset.records.count() == 0


def test_a_server_that_stops_sending_hits_the_read_timeout_and_is_transient(csv_server, settings):
    # Given a server that pauses 2 s after each 64 KiB
    settings.FETCH_READ_TIMEOUT_SECONDS = 0.3
    url = csv_server.serve("/slow.csv", b"x" * 300_000, chunk_delay=2.0)

    # When the download is read, then it fails as a transient error
    with pytest.raises(TransientImportError, match="download interrupted"):  # noqa: SIM117
        with open_source(url) as (raw, _length):
            while raw.read(65536):
                pass


def test_a_server_that_never_accepts_hits_the_connect_timeout_and_is_transient(settings):
    # Given a loopback socket whose accept queue is full: new connections hang
    settings.FETCH_CONNECT_TIMEOUT_SECONDS = 0.5
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(4):
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
            fillers.append(filler)

        with pytest.raises(TransientImportError, match="cannot reach"):  # noqa: SIM117
            with open_source(f"http://127.0.0.1:{port}/p.csv"):
                pass
    finally:
        for filler in fillers:
            filler.close()
        listener.close()
