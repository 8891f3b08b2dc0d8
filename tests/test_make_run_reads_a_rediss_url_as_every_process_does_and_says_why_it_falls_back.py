"""`make run` (project.devservices) reads a rediss:// REDIS_URL's TLS options as every process
does (common.redis_tls), and when a URL does not answer it says why, in words, before it falls
back to the embedded server.

Before, devservices asked redis-py alone: `ssl_cert_reqs=CERT_REQUIRED` (Celery's documented
form) was "Invalid SSL Certificate Requirements Flag" to it, so a TLS Redis that every process
would have reached was "REDIS_URL does not answer; falling back to the embedded Redis", and the
stack ran on the embedded one; and neither fallback said why (the tls hunt).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from project.devservices import BASE_DIR
from tests.tls_support import NEEDS_TLS_REDIS, make_certificates, tls_redis

pytestmark = [pytest.mark.processes, NEEDS_TLS_REDIS]

NOT_SIGNED = (
    "the TLS certificate of the server is not signed by a CA trusted here: give the file of "
    "its CA, as ssl_ca_certs in a rediss:// URL or sslrootcert in DATABASE_URL"
)


def devservices(**env: str) -> subprocess.CompletedProcess:
    """`python -m project.devservices run -- sh -c 'echo $REDIS_URL'` with `env`."""
    return subprocess.run(
        [sys.executable, "-m", "project.devservices", "run", "--", "sh", "-c",
         'echo "redis at $REDIS_URL"'],
        cwd=BASE_DIR, env={**os.environ, **env}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


@pytest.fixture(scope="module")
def certificates(tmp_path_factory):
    return make_certificates(tmp_path_factory.mktemp("tls") / "certificates")


def test_a_tls_redis_in_celerys_form_of_the_url_is_used(certificates):
    with tls_redis(certificates) as server:
        # Given REDIS_URL on a TLS Redis, written as Celery's documentation writes it
        url = server.url(query=f"ssl_cert_reqs=CERT_REQUIRED&ssl_ca_certs={certificates.ca}")

        # When `make run` looks for its Redis
        done = devservices(REDIS_URL=url)

    # Then it uses that Redis
    assert done.returncode == 0, done.stderr
    assert "[devservices] using REDIS_URL" in done.stderr, done.stderr
    assert f"redis at rediss://:s3cret-Redis-pass@127.0.0.1:{server.port}/0" in done.stdout


def test_a_redis_and_a_database_that_do_not_answer_are_said_with_why(certificates, refused_port):
    with tls_redis(certificates, "other_ca") as posing:
        # Given REDIS_URL on a server posing as the TLS Redis, and a DATABASE_URL on a closed port
        url = posing.url(query=f"ssl_ca_certs={certificates.ca}")

        # When `make run` looks for its servers
        done = devservices(
            REDIS_URL=url, DATABASE_URL=f"postgres://nobody:pw@127.0.0.1:{refused_port}/nothing"
        )

    # Then it says why each does not answer, in words, and falls back
    assert done.returncode == 0, done.stderr
    assert (
        "[devservices] DATABASE_URL does not answer (connection refused); falling back to the "
        "embedded PostgreSQL"
    ) in done.stderr, done.stderr
    assert (
        f"[devservices] REDIS_URL does not answer ({NOT_SIGNED}); falling back to the embedded "
        "Redis"
    ) in done.stderr, done.stderr
    assert f":{posing.port}/" not in done.stdout
