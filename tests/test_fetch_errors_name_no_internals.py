"""A failed download is told in words, never with requests' internals (issue 16: run errors
read "_PinnedHTTPPool(host='…', port=…): Max retries exceeded … NewConnectionError(…)")."""

import socket

import pytest

from tasks.errors import TransientImportError
from tasks.fetch import open_source

INTERNALS = ("Pool", "Connection(", "Max retries", "object at 0x", "urllib3")


def failure_of(url: str) -> str:
    with pytest.raises(TransientImportError) as failed:  # noqa: SIM117
        with open_source(url) as (raw, _length):
            while raw.read(65536):
                pass
    message = str(failed.value)
    assert not any(word in message for word in INTERNALS), message
    return message


def test_a_refused_connection_says_connection_refused():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()  # nothing listens there any more

    assert failure_of(f"http://127.0.0.1:{port}/p.csv") == (
        f"cannot reach http://127.0.0.1:{port}/p.csv: connection refused"
    )


def test_a_server_that_does_not_answer_says_so(settings):
    settings.FETCH_READ_TIMEOUT_SECONDS = 0.3
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    try:
        message = failure_of(f"http://127.0.0.1:{port}/p.csv")
    finally:
        listener.close()

    assert message.endswith(": the server stopped answering (read timed out)")


def test_a_download_cut_off_says_so(csv_server):
    url = csv_server.serve("/cut.csv", b"sku\n" + b"A-1\n" * 100_000, cut_after=150_000)

    message = failure_of(url)

    assert message in (
        "download failed: the connection broke off in the middle of the file",
        "download interrupted: the connection broke off in the middle of the file",
    )
