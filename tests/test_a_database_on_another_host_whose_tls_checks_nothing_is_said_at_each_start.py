"""A DATABASE_URL naming another host with a TLS that checks nothing (libpq's default
`sslmode=prefer`, or `require`) is one WARNING at the start of the web, a worker and beat,
naming the risk and the fix; with `sslmode=verify-full` (and its CA) nothing is said, nor of a
database on this host, a Unix socket or a one-label service name.

Before, nothing said it: `require` took a server whose certificate named another host (the tls
hunt), and `prefer` may not even encrypt. Read from the settings, without a round trip.
Then (says hunt) a remote-looking name given `hostaddr=127.0.0.1`, a connection that never
leaves this host, was said at each start: the address libpq connects to decides.
"""

from __future__ import annotations

import pytest

from project.devservices import free_port
from tests.conftest import answers, wait_for
from tests.tls_support import make_certificates, system_postgres, tls_postgres

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]

RISK = (
    "anyone on the network path can pose as the database and read or change what importbeat "
    "reads and writes; set sslmode=verify-full and sslrootcert in DATABASE_URL"
)


@pytest.mark.skipif(system_postgres() is None, reason="pgserver's PostgreSQL has no TLS")
def test_web_worker_and_beat_say_once_that_the_databases_tls_checks_nothing(processes, tmp_path):
    certificates = make_certificates(tmp_path / "certificates")
    # Given a database whose certificate names redis.example.com, reached at 127.0.0.1: after
    # db.invalid (another host, whose name does not resolve, so libpq goes on to the next), or
    # by the name redis.example.com at hostaddr 127.0.0.1 (this host: nothing crosses a network)
    with tls_postgres(certificates, "wrong_name") as base:
        port = base.rsplit(":", 1)[1].split("/")[0]
        for url, words in (
            (base.replace("@127.0.0.1:", "@db.invalid,127.0.0.1:") + "?sslmode=require",
             "encrypts but checks no certificate"),
            (base.replace("@127.0.0.1:", "@redis.example.com:")
             + "?hostaddr=127.0.0.1&sslmode=require", None),
            (base.replace("@127.0.0.1:", "@redis.example.com:")
             + f"?hostaddr=127.0.0.1&sslmode=verify-full&sslrootcert={certificates.ca}", None),
        ):  # fmt: skip
            # When the web, a worker and beat start on it
            web_port = web = free_port()
            started = [
                processes.start("web", DATABASE_URL=url, PORT=str(web_port), WEB_CONCURRENCY="2"),
                processes.start("worker", DATABASE_URL=url),
                processes.start("beat", DATABASE_URL=url),
            ]
            wait_for(lambda web=web: answers(f"http://127.0.0.1:{web}/admin/login/"), 60,
                     what=processes.logs())  # fmt: skip
            wait_for(lambda: "beat: Starting" in processes.log_of("beat"), 60,
                     what=processes.logs())  # fmt: skip
            wait_for(lambda: "ready." in processes.log_of("worker")
                     or "worker not started" in processes.log_of("worker"), 60,
                     what=processes.logs())  # fmt: skip
            logs = {name: processes.log_of(name) for name in ("web", "worker", "beat")}
            for process in started:
                processes.stop(process)
            for path in tmp_path.glob("*.log"):
                path.unlink()

            # Then each says it once of db.invalid, and nothing of this host or `verify-full`
            said = (
                f"the database at db.invalid:{port} is reached with sslmode=require, "
                f"which {words}: {RISK}"
            )
            for name, log in logs.items():
                if words:
                    assert log.count(said) == 1, (name, log)
                else:
                    assert "is reached with sslmode" not in log, (name, log)


@pytest.mark.parametrize(
    "url, environ, said",
    [
        ("postgres://u:pw@db.example.com:5432/x", {}, "sslmode=prefer, which may not even"),
        ("postgres://u:pw@10.0.0.5/x?sslmode=disable", {}, "sslmode=disable, which does not"),
        ("postgres://u:pw@db.example.com/x", {"PGSSLMODE": "require"}, "sslmode=require"),
        ("postgres://u:pw@db.example.com/x?sslmode=verify-ca", {}, None),
        ("postgres://u:pw@db.example.com/x", {"PGSSLMODE": "verify-full"}, None),
        ("postgres://u:pw@127.0.0.1:5432/x", {}, None),
        ("postgres://u:pw@localhost/x", {}, None),
        ("postgres://u:pw@[::1]:5432/x", {}, None),
        ("postgres://postgres@:5432/%2Frun%2Fpostgresql/x", {}, None),
        # docker-compose's `postgres` service: a network of the operator's own
        ("postgres://importbeat:pw@postgres:5432/importbeat", {}, None),
    ],
)
def test_which_urls_are_said(url, environ, said):
    from common import database_tls

    words = database_tls.unchecked_url(url, environ)
    if said is None:
        assert words is None
    else:
        assert words is not None and said in words and "pw" not in words
