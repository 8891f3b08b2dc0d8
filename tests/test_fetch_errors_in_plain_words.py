"""Every way a download fails reads as plain words in the run's message and in Test source, never
as a library's class name (issue: "the request failed (InvalidHeader)"); a failure of a kind
importbeat cannot name gets a plain sentence, its class going to the log and, for staff, to the
run's traceback."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from unittest import mock

import pytest

from schedules import credentials
from tasks import source_check
from tasks.errors import PermanentImportError
from tasks.fetch_errors import (
    BAD_ENCODING,
    CLOSED,
    CREDENTIAL_HEADER,
    NOT_HTTP,
    UNEXPLAINED,
    failure,
)
from tasks.sftp import NOT_SSH
from tests.factories import make_import
from tests.http_support import RawServer
from tests.importer_support import run_now

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("encryption_key")]

CLASS_NAME = re.compile(r"\b[A-Z][a-z]+[A-Z]\w*\b")


def plain(message: str) -> str:
    """`message`, checked to name no class (CamelCase) and no repr."""
    assert not CLASS_NAME.search(message), message
    assert "Errno" not in message and "(0x" not in message, message
    return message


@pytest.fixture
def raw_server() -> Iterator[type[RawServer]]:
    servers: list[RawServer] = []

    def start(answer: bytes) -> RawServer:
        servers.append(RawServer(answer))
        return servers[-1]

    yield start
    for server in servers:
        server.listener.close()


def failed_run(imp):
    run = run_now(imp)
    assert run.status == "failed", run.error_message
    plain(run.error_message)
    return run


@pytest.mark.parametrize(
    ("answer", "words"),
    [
        (b"HELLO THERE\r\n\r\n", NOT_HTTP),
        (b"sku,name\nA-1,Anvil\n", NOT_HTTP),  # a CSV with no HTTP around it
        (b"HTTP/1.1 200 OK\r\n" + b"X-Filler: 1\r\n" * 120 + b"\r\n", NOT_HTTP),
        (b"HTTP/1.1 200 OK\r\nX-Long: " + b"a" * 70_000 + b"\r\n\r\n", NOT_HTTP),
        (b"", CLOSED),
    ],
    ids=["not-http", "no-status-line", "too-many-headers", "header-too-long", "no-answer"],
)
def test_a_server_that_does_not_speak_http_is_told_in_plain_words(alice, raw_server, answer, words):
    server = raw_server(answer)

    run = failed_run(make_import(alice, server.url))

    assert run.error_message == f"cannot reach {server.url}: {words}"


def test_a_file_labelled_compressed_that_is_not_says_so(alice, csv_server):
    url = csv_server.serve("/p.csv", "sku\nA-1\n", headers={"Content-Encoding": "gzip"})
    imp = make_import(alice, url)

    run = failed_run(imp)
    checked = source_check.check_source(imp.pk)

    assert run.error_message == f"download interrupted: {BAD_ENCODING}"
    assert checked["problems"] == [run.error_message]  # Test source says the same


def saved_with(imp, credential: dict[str, str]):
    """`imp` with a credential saved as it was before the rule at save refused it."""
    imp.credential_secret = credentials.encrypt(credential)
    imp.credential_kind = credential["kind"]
    imp.credential_origin = credentials.origin(imp.source_url)
    imp.save(update_fields=["credential_secret", "credential_kind", "credential_origin"])
    return imp


UNSENDABLE = {
    "leading-space": {"kind": "header", "name": "X-Api-Key", "value": " key-456"},
    "line-break": {"kind": "header", "name": "X-Api-Key", "value": "key\r\nX-Evil: 1"},
    "colon-in-name": {"kind": "header", "name": "X:Key", "value": "key-456"},
    "beyond-latin-1": {"kind": "header", "name": "X-Api-Key", "value": "key-€"},
    "accent-in-name": {"kind": "header", "name": "X-Clé", "value": "key-456"},
}


@pytest.mark.parametrize("credential", UNSENDABLE.values(), ids=UNSENDABLE.keys())
def test_a_saved_credential_the_client_cannot_send_fails_the_run_in_plain_words(
    alice, csv_server, credential
):
    url = csv_server.serve("/p.csv", "sku\nA-1\n")
    imp = saved_with(make_import(alice, url), credential)

    run = failed_run(imp)
    checked = source_check.check_source(imp.pk)

    assert run.error_message == f"cannot fetch {url}: {CREDENTIAL_HEADER}"
    assert plain(checked["problems"][0]) == run.error_message
    assert csv_server.hits.get("/p.csv") is None  # nothing was sent


def test_test_source_tells_a_server_that_is_not_http_in_plain_words(alice, raw_server):
    server = raw_server(b"SSH-2.0-OpenSSH_9.6\r\n")
    imp = make_import(alice, server.url)

    checked = source_check.check_source(imp.pk)

    assert checked["ok"] is False
    assert plain(checked["problems"][0]) == f"cannot reach {server.url}: {NOT_HTTP}"


def test_a_host_that_does_not_resolve_names_no_errno(alice, settings):
    settings.ALLOWED_PRIVATE_HOSTS = []

    run = failed_run(make_import(alice, "https://no-such-host.invalid/p.csv"))

    assert run.error_message.startswith("cannot resolve host 'no-such-host.invalid': ")


class OddLibraryError(Exception):
    """A library's error of a kind tasks.fetch_errors does not know."""


def test_an_error_of_a_kind_not_known_reads_plainly_and_keeps_its_class_for_staff(
    alice, caplog, django_user_model
):
    imp = make_import(alice, "https://files.example.com/p.csv")
    caplog.set_level(logging.WARNING, logger="tasks.fetch_errors")
    try:
        raise OddLibraryError("pool <_PinnedHTTPPool object at 0x7f>")
    except OddLibraryError as error:
        unknown = failure(PermanentImportError, "cannot fetch https://files.example.com", error)
        unknown.__cause__ = error

    with mock.patch("tasks.engine.import_run", side_effect=unknown):
        run = failed_run(imp)

    assert run.error_message == f"cannot fetch https://files.example.com: {UNEXPLAINED}"
    assert "OddLibraryError" in caplog.text
    assert "OddLibraryError: pool" in run.error_details["traceback"]


@pytest.mark.parametrize(
    ("answer", "words"),
    [
        (b"HTTP/1.1 400 Bad Request\r\n\r\n" * 5, NOT_SSH),
        (b"", NOT_SSH),
        (b"SSH-2.0-Broken\r\n" + b"\x00" * 64, "invalid packet blocking"),
    ],
    ids=["an-http-server", "no-answer", "a-broken-ssh-server"],
)
def test_an_sftp_server_that_breaks_the_handshake_is_told_in_plain_words(
    alice, raw_server, answer, words
):
    server = raw_server(answer)
    url = server.url.replace("http://", "sftp://feed@")

    run = failed_run(make_import(alice, url, credential={"kind": "password", "password": "pw"}))

    assert run.error_message == f"the SSH handshake with 127.0.0.1 failed ({words})"


def test_a_callback_that_does_not_speak_http_is_told_in_plain_words(raw_server):
    from tasks.errors import TransientImportError
    from tasks.webhooks import post_signed

    server = raw_server(b"HELLO THERE\r\n\r\n")

    with pytest.raises(TransientImportError) as failed:
        post_signed(server.url, {"event": "failed"}, "secret")

    assert plain(str(failed.value)) == f"cannot reach {server.url}: {NOT_HTTP}"
