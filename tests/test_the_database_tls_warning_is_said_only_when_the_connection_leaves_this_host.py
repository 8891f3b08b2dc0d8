"""The warning of a database TLS that checks nothing is said exactly when libpq's connection
goes to another host: where `hostaddr` (or PGHOSTADDR) is given, libpq connects to it and uses
`host` only as a name, so the address decides; `localhost.localdomain`, `*.localhost`, an
IPv4-mapped loopback (`::ffff:127.0.0.1`) and a name /etc/hosts gives loopback addresses only
are this host.

Before (says hunt), `db.example.com` with `hostaddr=127.0.0.1` was warned of at every start,
`localhost` with `hostaddr=10.1.2.3` (another host) was not, nor was the address named;
`localhost.localdomain` and `::ffff:127.0.0.1` were warned of; `sslmode=disable` was said to
"may not even encrypt" where it never does.
"""

from __future__ import annotations

import pytest

from common import database_tls

PREFER = "is reached with sslmode=prefer, which may not even encrypt, and checks no certificate"


@pytest.mark.parametrize(
    "url, environ, said",
    [
        ("postgres://u:pw@db.example.com:5432/x?hostaddr=127.0.0.1", {}, None),
        ("postgres://u:pw@db.example.com/x", {"PGHOSTADDR": "127.0.0.1"}, None),
        ("postgres://u:pw@db.example.com/x?hostaddr=::1", {}, None),
        ("postgres://u:pw@localhost.localdomain/x", {}, None),
        ("postgres://u:pw@db.localhost/x", {}, None),
        ("postgres://u:pw@127.4.5.6/x", {}, None),
        ("postgres://u:pw@[::ffff:127.0.0.1]/x", {}, None),
        ("postgres://u:pw@/x?host=/var/run/postgresql", {}, None),
        ("postgres://u:pw@/x", {"PGHOST": "/var/run/postgresql"}, None),
        (
            "postgres://u:pw@localhost/x?hostaddr=10.1.2.3",
            {},
            f"the database at localhost:5432 (address 10.1.2.3) {PREFER}",
        ),
        (
            "postgres://u:pw@127.0.0.1,db.example.com:5433/x",
            {},
            f"the database at db.example.com:5433 {PREFER}",
        ),
        (
            "postgres://u:pw@[::ffff:10.0.0.5]/x",
            {},
            f"the database at [::ffff:10.0.0.5]:5432 {PREFER}",
        ),
        (
            "postgres://u:pw@db.example.com/x?sslmode=disable",
            {},
            "the database at db.example.com:5432 is reached with sslmode=disable, which does "
            "not encrypt",
        ),
    ],
)
def test_it_is_said_when_the_connection_goes_to_another_host(url, environ, said):
    # When the warning reads a DATABASE_URL
    words = database_tls.unchecked_url(url, environ)

    # Then it is said of another host only, naming where libpq connects, never the password
    if said is None:
        assert words is None
    else:
        assert words is not None and words.startswith(said + ":") and "pw" not in words, words


def test_a_name_the_hosts_file_gives_loopback_addresses_only_is_this_host(tmp_path, monkeypatch):
    # Given a hosts file naming this machine db.internal.example, and a remote db.example.com
    hosts = tmp_path / "hosts"
    hosts.write_text(
        "127.0.0.1 localhost\n127.0.1.1 db.internal.example  # this machine\n"
        "10.0.0.5 db.example.com\n::1 db.internal.example\n"
    )
    monkeypatch.setattr(database_tls, "HOSTS_FILE", str(hosts))

    # When the warning reads each
    # Then it says nothing of the first, and names the second
    assert database_tls.unchecked_url("postgres://u:pw@db.internal.example/x", {}) is None
    words = database_tls.unchecked_url("postgres://u:pw@db.example.com/x", {})
    assert words is not None and words.startswith(f"the database at db.example.com:5432 {PREFER}")
