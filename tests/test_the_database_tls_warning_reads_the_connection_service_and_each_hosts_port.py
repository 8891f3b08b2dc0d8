"""The warning of a database TLS that checks nothing reads a connection service as libpq does
(`?service=` or PGSERVICE, from PGSERVICEFILE or ~/.pg_service.conf, then PGSYSCONFDIR's
pg_service.conf; the URL first, then the service, then the environment), and names the host it
warns of with that host's own port, an IPv6 address in brackets.

Regression (says review): a DATABASE_URL `postgres://app@/importbeat?service=prod`, whose
service names a remote host with libpq's default sslmode=prefer, was read as a Unix socket and
said nothing; `postgres://…@127.0.0.1:5432,db2.example.com:5433/…` was said as
"db2.example.com:5432,5433", and `[2001:db8::1]:5432` as "2001:db8::1:5432".
"""

from __future__ import annotations

import psycopg
import pytest

from common import database_tls

PREFER = "is reached with sslmode=prefer, which may not even encrypt, and checks no certificate"
SERVICES = """\
# importbeat's services
[prod]
host=db.example.com
port=5433
dbname=importbeat

[checked]
host=db.example.com
sslmode=verify-full

[here]
host=/var/run/postgresql
"""


@pytest.fixture
def service_file(tmp_path):
    path = tmp_path / "pg_service.conf"
    path.write_text(SERVICES)
    return str(path)


@pytest.mark.parametrize(
    "url, environ, said",
    [
        ("postgres://app:pw@/importbeat?service=prod", {}, f"db.example.com:5433 {PREFER}"),
        ("postgres://app:pw@/importbeat", {"PGSERVICE": "prod"}, f"db.example.com:5433 {PREFER}"),
        # The URL's host and sslmode win over the service's, the service's over the environment's
        ("postgres://app:pw@localhost/importbeat?service=prod", {}, None),
        ("postgres://app:pw@/importbeat?service=prod&sslmode=verify-full", {}, None),
        ("postgres://app:pw@/importbeat?service=checked", {"PGSSLMODE": "prefer"}, None),
        (
            "postgres://app:pw@/importbeat?service=prod",
            {"PGHOST": "/var/run/postgresql"},
            f"db.example.com:5433 {PREFER}",
        ),
        ("postgres://app:pw@/importbeat?service=here", {}, None),
    ],
)
def test_a_connection_service_is_read_as_libpq_reads_it(service_file, url, environ, said):
    # When the warning reads a DATABASE_URL that names a service of the service file
    words = database_tls.unchecked_url(url, {"PGSERVICEFILE": service_file, **environ})

    # Then it is said exactly when that service's host is another, with the service's port
    if said is None:
        assert words is None
    else:
        assert words is not None and words.startswith(f"the database at {said}:"), words


def test_the_system_service_file_is_read_when_the_users_lacks_the_service(tmp_path, service_file):
    # Given a user's service file without `prod`, and the system's (PGSYSCONFDIR) with it
    users = tmp_path / "users.conf"
    users.write_text("[other]\nhost=localhost\n")
    folder = tmp_path / "etc"
    folder.mkdir()
    (folder / "pg_service.conf").write_text(SERVICES)
    environ = {"PGSERVICEFILE": str(users), "PGSYSCONFDIR": str(folder)}

    # When the warning reads a DATABASE_URL naming `prod`
    words = database_tls.unchecked_url("postgres://app:pw@/importbeat?service=prod", environ)

    # Then it is said of the system's `prod`
    assert words is not None and words.startswith(f"the database at db.example.com:5433 {PREFER}")


@pytest.mark.django_db
def test_libpq_reads_the_service_before_the_environment(tmp_path, monkeypatch):
    """What the tests above hold the warning to: libpq takes the service's sslmode=disable over
    PGSSLMODE=require (a service file of its own, naming this test's database)."""
    from django.db import connection

    db = connection.settings_dict
    local = tmp_path / "local.conf"
    local.write_text(
        f"[local]\nhost={db['HOST'] or '127.0.0.1'}\nport={db['PORT'] or 5432}\n"
        f"user={db['USER']}\ndbname={db['NAME']}\nsslmode=disable\n"
    )
    monkeypatch.setenv("PGSERVICEFILE", str(local))
    monkeypatch.setenv("PGSSLMODE", "require")
    if db.get("PASSWORD"):
        monkeypatch.setenv("PGPASSWORD", db["PASSWORD"])
    with psycopg.connect(service="local") as reached:
        assert reached.info.get_parameters().get("sslmode", "disable") == "disable"
        assert not reached.pgconn.ssl_in_use


@pytest.mark.parametrize(
    "url, said",
    [
        ("postgres://u:pw@127.0.0.1:5432,db2.example.com:5433/x", "db2.example.com:5433"),
        ("postgres://u:pw@db1.example.com:5432,db2.example.com:5433/x", "db1.example.com:5432"),
        ("postgres://u:pw@127.0.0.1,db2.example.com:5433/x", "db2.example.com:5433"),
        ("postgres://u:pw@[2001:db8::1]:5432/x", "[2001:db8::1]:5432"),
        (
            "postgres://u:pw@localhost/x?hostaddr=2001:db8::5",
            "localhost:5432 (address 2001:db8::5)",
        ),
    ],
)
def test_the_host_warned_of_is_named_with_its_own_port(url, said):
    # When the warning reads a DATABASE_URL of several hosts, or of an IPv6 address
    words = database_tls.unchecked_url(url, {})

    # Then it names the first remote host with its own port, an IPv6 address in brackets
    assert words is not None and words.startswith(f"the database at {said} {PREFER}"), words
