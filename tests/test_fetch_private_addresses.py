"""No request reaches a loopback, private, link-local or metadata address unless allowed.

No test here sends traffic anywhere but to the suite's own loopback server: `_loopback_only`
fails any test that tries to open a socket to another address.
"""

import socket

import pytest

from tasks import fetch
from tasks.errors import PermanentImportError
from tests.factories import PRODUCTS_CSV, make_import, make_import_saved_earlier
from tests.importer_support import (
    run_now,
)

pytestmark = pytest.mark.django_db
REAL_GETADDRINFO = socket.getaddrinfo


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch):
    import urllib3.util.connection

    def guard(real):
        def guarded(address, *args, **kwargs):
            assert address[0] in ("127.0.0.1", "::1", "localhost"), f"test tried {address}"
            return real(address, *args, **kwargs)

        return guarded

    monkeypatch.setattr(socket, "create_connection", guard(socket.create_connection))
    urllib3_connection = urllib3.util.connection
    monkeypatch.setattr(
        urllib3_connection, "create_connection", guard(urllib3_connection.create_connection)
    )


def fake_dns(monkeypatch, answers: dict[str, list[str]]):
    """Resolve the names in `answers` to the given addresses, one answer per call."""

    def getaddrinfo(host, port, *args, **kwargs):
        if host in answers:
            address = answers[host].pop(0) if len(answers[host]) > 1 else answers[host][0]
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            return [(family, socket.SOCK_STREAM, 6, "", (address, port or 80))]
        return REAL_GETADDRINFO(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1", "10.0.0.5", "172.16.3.4", "192.168.1.1", "169.254.169.254", "100.64.0.1",
        "0.0.0.0", "::1", "fd00::1", "fe80::1", "::ffff:127.0.0.1", "::ffff:169.254.169.254",
    ],
)  # fmt: skip
def test_it_refuses_private_loopback_link_local_and_metadata_addresses(settings, address):
    settings.ALLOWED_PRIVATE_HOSTS = []

    with pytest.raises(PermanentImportError, match="a private address that is not allowed"):
        fetch.public_addresses(address)


def test_it_accepts_a_public_address():
    assert fetch.public_addresses("93.184.216.34") == ["93.184.216.34"]


def test_a_loopback_source_fails_the_run_without_a_request(alice, csv_server, settings):
    # Given an import of the suite's loopback server, which is no longer allowed since it was
    # saved (saving it now is refused: test_private_addresses_are_refused_at_save.py)
    imp = make_import(alice, csv_server.serve("/p.csv", PRODUCTS_CSV))
    settings.ALLOWED_PRIVATE_HOSTS = []

    # When the import runs
    run = run_now(imp)

    # Then it fails at once saying why, and the server never saw a request
    assert run.status == "failed"
    assert run.attempts == 1
    assert "127.0.0.1, a private address that is not allowed" in run.error_message
    assert csv_server.hits == {}


def test_a_name_that_resolves_to_a_private_address_is_refused(alice, monkeypatch):
    fake_dns(monkeypatch, {"intranet.example.com": ["10.1.2.3"]})
    imp = make_import(alice, "http://intranet.example.com/export.csv")

    run = run_now(imp)

    assert run.status == "failed"
    assert "intranet.example.com resolves to 10.1.2.3" in run.error_message


def test_the_metadata_address_is_refused(alice):
    imp = make_import_saved_earlier(alice, "http://169.254.169.254/latest/meta-data/")

    run = run_now(imp)

    assert run.status == "failed"
    assert "169.254.169.254, a private address that is not allowed" in run.error_message


@pytest.mark.parametrize(
    "target",
    ["http://169.254.169.254/latest/meta-data/", "http://10.0.0.7/", "http://[::1]:{port}/p.csv"],
)
def test_a_redirect_to_a_private_address_is_refused(alice, csv_server, target):
    # Given an allowed server that redirects to a private address
    port = csv_server.httpd.server_address[1]
    url = csv_server.serve(
        "/moved", b"", status=302, headers={"Location": target.format(port=port)}
    )
    imp = make_import(alice, url)

    run = run_now(imp)

    assert run.status == "failed"
    assert "a private address that is not allowed" in run.error_message
    assert csv_server.hits == {"/moved": 1}


def test_a_name_that_turns_private_between_check_and_connect_is_refused(
    alice, monkeypatch, settings
):
    # Given DNS answers a public address to the check, then loopback (DNS rebinding)
    settings.ALLOWED_PRIVATE_HOSTS = []
    fake_dns(monkeypatch, {"rebind.example.com": ["93.184.216.34", "127.0.0.1"]})
    imp = make_import(alice, "http://rebind.example.com/p.csv")

    run = run_now(imp)

    # Then the connection itself is refused: it connects only to an address it checked
    assert run.status == "failed"
    assert "rebind.example.com resolves to 127.0.0.1" in run.error_message


def test_a_host_named_in_allowed_private_hosts_is_fetched(alice, csv_server, settings):
    port = csv_server.httpd.server_address[1]
    settings.ALLOWED_PRIVATE_HOSTS = [f"localhost:{port}"]
    csv_server.serve("/p.csv", PRODUCTS_CSV)
    imp = make_import(alice, f"http://localhost:{port}/p.csv")

    run = run_now(imp)

    assert run.status == "succeeded", run.error_message
