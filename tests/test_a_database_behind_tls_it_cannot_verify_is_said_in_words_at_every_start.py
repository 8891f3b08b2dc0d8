"""A PostgreSQL reached with `sslmode=verify-full` whose certificate names another host, or
whose CA file (`sslrootcert`) is not there, is refused, and said in words where an operator
looks: `migrate`, a worker's start, /health's log. Its password is in none of them.

libpq's words ("server certificate for … does not match host name …", "root certificate file
… does not exist") were none of those error_words knew: each said "the reason is in the log".
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from django.contrib.auth import get_user_model
from knox.models import AuthToken

from tests.conftest import answers, wait_for
from tests.test_worker_not_started_without_its_database_or_broker import refusal
from tests.tls_support import PG_PASSWORD, make_certificates, system_postgres, tls_postgres

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.processes,
    pytest.mark.skipif(system_postgres() is None, reason="pgserver's PostgreSQL has no TLS"),
]

BASE_DIR = Path(__file__).resolve().parent.parent
NOT_ITS_NAME = (
    "the TLS certificate of the server names another host: use the host name it was issued for"
)


@pytest.fixture(scope="module")
def certificates(tmp_path_factory):
    return make_certificates(tmp_path_factory.mktemp("tls") / "certificates")


def migrate(url: str, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, DATABASE_URL=url, DJANGO_DEBUG="1")
    return subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", *args],
                          cwd=BASE_DIR, env=env, capture_output=True, text=True,
                          timeout=300)  # fmt: skip


def test_a_database_whose_certificate_names_another_host_is_said_at_migrate_worker_and_health(
    processes, certificates
):
    ops = get_user_model().objects.create_user("ops", is_staff=True)
    _, token = AuthToken.objects.create(user=ops, expiry=None)
    # Given a database whose certificate, of the trusted CA, names another host
    with tls_postgres(certificates, "wrong_name") as base:
        url = f"{base}?sslmode=verify-full&sslrootcert={certificates.ca}"
        port = base.rsplit(":", 1)[1].split("/")[0]
        said = f"cannot reach the database importbeat at 127.0.0.1:{port}: {NOT_ITS_NAME}"

        # When the operator migrates, starts a worker and asks for health
        migrated = migrate(url)
        worker = processes.start("worker", DATABASE_URL=url)
        web_port = processes_web(processes, DATABASE_URL=url)
        health = requests.get(f"http://127.0.0.1:{web_port}/api/v1/health",
                              headers={"Authorization": f"Token {token}"}, timeout=60)  # fmt: skip

        # Then each says it in the same words
        assert migrated.returncode != 0
        assert f"migrate: {said}" in migrated.stderr, migrated.stderr[-2000:]
        assert refusal(processes, worker) == f"importbeat worker not started: {said}"
    # (no token can be read without the database: health shows statuses, its log the words)
    assert health.status_code == 503, health.text
    assert health.json()["checks"]["database"] == {"ok": False}, health.text
    # (the words alone: the library's class and text are at DEBUG, says2 hunt)
    assert f"WARNING schedules.api.health {said}\n" in processes.log_of("web")
    assert PG_PASSWORD not in processes.logs() + migrated.stdout + migrated.stderr + health.text


def processes_web(processes, **env: str) -> int:
    from project.devservices import free_port

    port = free_port()
    processes.start("web", PORT=str(port), WEB_CONCURRENCY="1", **env)
    # (its database is down: the login page answers 500, which is an answer)
    wait_for(lambda: answers(f"http://127.0.0.1:{port}/api/v1/health"), 30, what=processes.logs())
    return port


def test_a_missing_ca_file_is_said_and_the_right_certificate_is_taken(certificates):
    with tls_postgres(certificates) as base:
        # Given the right server, and a URL whose sslrootcert is not on this machine
        missing = migrate(f"{base}?sslmode=verify-full&sslrootcert=/nowhere/root.crt")
        # ... and one that gives it (the plan reads what is applied on that server: taken over
        # the checked TLS as the whole migrate is, without half a minute of migrations)
        verified = migrate(f"{base}?sslmode=verify-full&sslrootcert={certificates.ca}", "--plan")

    assert missing.returncode != 0
    assert "the CA file that sslrootcert names does not exist" in missing.stderr, missing.stderr
    assert verified.returncode == 0, verified.stderr[-2000:]
    assert "Planned operations:" in verified.stdout, verified.stdout[-2000:]
    assert PG_PASSWORD not in missing.stdout + missing.stderr + verified.stdout + verified.stderr
