"""The private-address rule, tightened (issue 11, point 7): ALLOWED_PRIVATE_HOSTS names ports,
and IPv6 forms that carry an IPv4 address are judged by the address they carry.

Regressions: naming a host opened every port of it (its database, its admin); `64:ff9b::`
(NAT64), `2002::/16` (6to4), `::/96`, `::ffff:0:0:0/96` and site-local `fec0::/10` addresses
of private IPv4 addresses passed as public.
"""

import pytest

from tasks import addresses
from tasks.errors import PermanentImportError
from tests.factories import PRODUCTS_CSV, make_import
from tests.importer_support import run_now


@pytest.mark.parametrize(
    "address",
    [
        "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254, the metadata address
        "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
        "64:ff9b:1::a00:1",  # local-use NAT64 of 10.0.0.1
        "2002:7f00:1::",  # 6to4 of 127.0.0.1
        "2002:a9fe:a9fe::1",  # 6to4 of 169.254.169.254
        "::a00:1",  # IPv4-compatible 10.0.0.1
        "::7f00:1",  # IPv4-compatible 127.0.0.1
        "::ffff:0:a00:1",  # IPv4-translated 10.0.0.1
        "::ffff:a9fe:a9fe",  # IPv4-mapped 169.254.169.254
        "fec0::1",  # site-local
        "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # Teredo, client 192.0.2.45
    ],
)
def test_ipv6_forms_of_private_ipv4_addresses_are_refused(settings, address):
    settings.ALLOWED_PRIVATE_HOSTS = []

    with pytest.raises(PermanentImportError, match="a private address that is not allowed"):
        addresses.public_addresses(address, 443)


@pytest.mark.parametrize("address", ["64:ff9b::808:808", "2002:808:808::1"])
def test_ipv6_forms_of_public_ipv4_addresses_are_judged_public(address):
    assert addresses.public_addresses(address, 443) == [address]


def test_a_bare_allowed_host_opens_its_default_ports_only(settings):
    settings.ALLOWED_PRIVATE_HOSTS = ["10.0.0.5", "db.internal"]

    assert addresses.is_allowed("10.0.0.5", 80) and addresses.is_allowed("10.0.0.5", 443)
    assert not addresses.is_allowed("10.0.0.5", 5432)
    assert not addresses.is_allowed("db.internal", 6379)


def test_host_port_entries_open_that_port_only(settings):
    settings.ALLOWED_PRIVATE_HOSTS = ["10.0.0.5:8080", "[fd00::1]:9000", "files.lan:*"]

    assert addresses.is_allowed("10.0.0.5", 8080) and not addresses.is_allowed("10.0.0.5", 80)
    assert addresses.is_allowed("fd00:0::1", 9000) and not addresses.is_allowed("fd00::1", 443)
    assert addresses.is_allowed("files.lan", 6379)


def test_an_entry_with_a_bad_port_fails_the_fetch_saying_which(settings):
    settings.ALLOWED_PRIVATE_HOSTS = ["10.0.0.5:http"]

    with pytest.raises(PermanentImportError) as failed:
        addresses.public_addresses("10.0.0.5", 80)

    assert str(failed.value) == "ALLOWED_PRIVATE_HOSTS: '10.0.0.5:http' has no valid port"


@pytest.mark.django_db
def test_a_source_on_another_port_of_an_allowed_host_is_refused(alice, csv_server, settings):
    # Given an import of a server on a port that is not 80 or 443, and loopback allowed by
    # its bare name since it was saved (saving it now is refused, as it could never be fetched)
    imp = make_import(alice, csv_server.serve("/p.csv", PRODUCTS_CSV))
    settings.ALLOWED_PRIVATE_HOSTS = ["127.0.0.1"]

    run = run_now(imp)

    assert run.status == "failed"
    assert "127.0.0.1 resolves to 127.0.0.1, a private address that is not allowed" in (
        run.error_message
    )
    assert csv_server.hits == {}


@pytest.mark.django_db
def test_a_source_on_the_allowed_port_is_fetched(alice, csv_server, settings):
    port = csv_server.httpd.server_address[1]
    settings.ALLOWED_PRIVATE_HOSTS = [f"127.0.0.1:{port}"]
    imp = make_import(alice, csv_server.serve("/p.csv", PRODUCTS_CSV))

    assert run_now(imp).status == "succeeded"
