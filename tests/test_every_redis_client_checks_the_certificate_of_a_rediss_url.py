"""Every Redis client importbeat has checks the certificate of a rediss:// URL's server, and
refuses one posing as Redis in the same words.

kombu took a rediss:// URL without `ssl_cert_reqs` for "check nothing": the broker (the worker's
consumer, beat's and the web process's sends, Flower, the worker's start-up probe and /health's)
connected to any server on the path, which could read every run's message and pose as Redis,
while redis-py's clients (locks, leases, throttles) refused it; the result backend refused
every rediss:// URL without `ssl_cert_reqs`; and `ssl_cert_reqs=CERT_REQUIRED`, Celery's
documented form, failed every redis-py client. A CA of the operator's is given as
`?ssl_ca_certs=/path`; `ssl_cert_reqs=none` is the explicit way to check nothing.
"""

from __future__ import annotations

import pytest

from tests.conftest import test_database_url as database_url
from tests.tls_support import NEEDS_TLS_REDIS, every_client, make_certificates, tls_redis

pytestmark = [pytest.mark.django_db(transaction=True), NEEDS_TLS_REDIS]

NOT_SIGNED = (
    "the TLS certificate of the server is not signed by a CA trusted here: give the file of "
    "its CA, as ssl_ca_certs in a rediss:// URL or sslrootcert in DATABASE_URL"
)
NOT_ITS_NAME = (
    "the TLS certificate of the server names another host: use the host name it was issued for"
)


@pytest.fixture(scope="module")
def certificates(tmp_path_factory):
    return make_certificates(tmp_path_factory.mktemp("tls") / "certificates")


def test_a_server_whose_certificate_no_trusted_ca_signed_is_refused_by_every_client(
    certificates,
):
    # Given a server posing as Redis, with a certificate of its own making for the right name
    with tls_redis(certificates, "other_ca") as posing:
        # When importbeat's processes are given its rediss:// URL, as a managed Redis's
        said = every_client(posing.url(), database_url())

    # Then no client talks to it, and each says why in the same words
    assert said == dict.fromkeys(said, NOT_SIGNED)


def test_a_server_whose_certificate_names_another_host_is_refused_by_every_client(certificates):
    # Given a server with a certificate of the operator's CA, issued for another name
    with tls_redis(certificates, "wrong_name") as posing:
        # When the URL trusts that CA
        said = every_client(posing.url(query=f"ssl_ca_certs={certificates.ca}"), database_url())

    # Then no client talks to it either: the name is checked too
    assert said == dict.fromkeys(said, NOT_ITS_NAME)


@pytest.mark.parametrize(
    "query",
    ["ssl_ca_certs={ca}", "ssl_cert_reqs=required&ssl_ca_certs={ca}",
     "ssl_cert_reqs=CERT_REQUIRED&ssl_ca_certs={ca}"],
)  # fmt: skip
def test_the_right_server_is_reached_by_every_client_with_the_operators_ca(certificates, query):
    with tls_redis(certificates, "right") as server:
        said = every_client(server.url(query=query.format(ca=certificates.ca)), database_url())

    assert said == dict.fromkeys(said, "OK")


def test_ssl_cert_reqs_none_checks_nothing_for_every_client_alike(certificates):
    # Given an operator who opts out of the check, explicitly
    with tls_redis(certificates, "other_ca") as server:
        said = every_client(server.url(query="ssl_cert_reqs=none"), database_url())

    # Then every client talks TLS to the server without checking it, all alike
    assert said == dict.fromkeys(said, "OK")
