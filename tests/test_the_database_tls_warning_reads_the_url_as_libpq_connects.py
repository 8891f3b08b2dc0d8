"""The warning of a database TLS that checks nothing reads DATABASE_URL as libpq connects with
it: `sslmode=require` with a root certificate (`sslrootcert`, PGSSLROOTCERT) checks the
server's certificate against it, as `verify-ca` does, and is not said; a host given in the
URL's `?host=` (nothing before the path) is the one reached, and is said.

Before, `?sslmode=require&sslrootcert=ca.crt` was said to check no certificate at every start,
and `postgres://app@/importbeat?host=db.example.com` went unsaid (review2 hunt).
"""

from __future__ import annotations

import pytest

from common import database_tls


@pytest.fixture
def alices_ca(tmp_path):
    path = tmp_path / "ca.crt"
    path.write_text("alice's CA\n")
    return path


@pytest.mark.parametrize(
    "url, environ, said",
    [
        ("postgres://alice:pw@db.example.com/x?sslmode=require&sslrootcert={ca}", {}, None),
        ("postgres://alice:pw@db.example.com/x?sslmode=require", {"PGSSLROOTCERT": "{ca}"}, None),
        (
            "postgres://alice:pw@db.example.com/x?sslmode=require&sslrootcert={ca}.missing",
            {},
            "the database at db.example.com:5432 is reached with sslmode=require",
        ),
        (
            "postgres://bob:pw@/x?host=db.example.com",
            {},
            "the database at db.example.com:5432 is reached with sslmode=prefer",
        ),
        ("postgres://bob:pw@/x?host=/run/postgresql", {}, None),
    ],
)
def test_the_warning_is_said_as_libpq_connects(alices_ca, url, environ, said, monkeypatch):
    # Given a home with no root certificate of its own, and alice's CA on disk
    monkeypatch.setenv("HOME", str(alices_ca.parent / "home"))
    url = url.format(ca=alices_ca)
    environ = {key: value.format(ca=alices_ca) for key, value in environ.items()}

    # When the warning reads DATABASE_URL
    words = database_tls.unchecked_url(url, environ)

    # Then it says what libpq does with it, and never the password
    if said is None:
        assert words is None
    else:
        assert words is not None and words.startswith(said) and "pw" not in words
