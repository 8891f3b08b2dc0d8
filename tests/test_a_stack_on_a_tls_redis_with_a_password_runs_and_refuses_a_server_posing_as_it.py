"""The stack on a managed Redis that speaks TLS and asks a password (`rediss://:pw@host:6380/0`
with the operator's CA in `?ssl_ca_certs=`): web, worker, beat and Flower started from the
Procfile run alice's import end to end; a server posing as that Redis (a certificate no trusted
CA signed) is refused by each, said in words (worker start, /health, a trigger's 503), and a
wrong password likewise; the password is in no log line, no answer.

Before, the broker took any server on the path for a rediss:// Redis (kombu's default checked
no certificate): a worker started and took alice's run from it; the result backend refused to
start on a rediss:// URL without `ssl_cert_reqs`; Flower's broker page had no TLS options.
"""

from __future__ import annotations

import pytest
import requests
from django.contrib.auth import get_user_model
from knox.models import AuthToken

from common.error_words import CLASS_NAME
from project.devservices import free_port
from schedules.models import ImportRun
from tests.conftest import answers, wait_for
from tests.factories import PRODUCTS_CSV, make_import
from tests.reliability import FAST, start_flower
from tests.test_worker_not_started_without_its_database_or_broker import refusal
from tests.tls_support import NEEDS_TLS_REDIS, PASSWORD, make_certificates, tls_redis

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes, NEEDS_TLS_REDIS]

NOT_SIGNED = (
    "the TLS certificate of the server is not signed by a CA trusted here: give the file of "
    "its CA, as ssl_ca_certs in a rediss:// URL or sslrootcert in DATABASE_URL"
)


@pytest.fixture(scope="module")
def certificates(tmp_path_factory):
    return make_certificates(tmp_path_factory.mktemp("tls") / "certificates")


def tokens(alice) -> tuple[str, str]:
    _, token = AuthToken.objects.create(user=alice, expiry=None)
    ops = get_user_model().objects.create_user("ops", is_staff=True)
    _, ops_token = AuthToken.objects.create(user=ops, expiry=None)
    return token, ops_token


def start_web(processes, **env: str) -> str:
    port = free_port()
    processes.start("web", PORT=str(port), WEB_CONCURRENCY="1", **env)
    base = f"http://127.0.0.1:{port}"
    wait_for(lambda: answers(f"{base}/admin/login/"), 30, what="web\n" + processes.logs())
    return base


def asked(base: str, method: str, path: str, token: str) -> requests.Response:
    headers = {"Authorization": f"Token {token}"}
    return requests.request(method, f"{base}{path}", headers=headers, timeout=60)


def on(redis_url: str) -> dict[str, str]:
    return {"REDIS_URL": redis_url, "CELERY_BROKER_URL": redis_url,
            "CELERY_RESULT_BACKEND": redis_url, **FAST}  # fmt: skip


def test_the_stack_runs_alices_import_on_a_tls_redis_with_a_password(
    alice, csv_server, processes, certificates
):
    imp = make_import(alice, csv_server.serve("/p.csv", PRODUCTS_CSV))
    token, ops_token = tokens(alice)
    with tls_redis(certificates) as server:
        # Given every process on the TLS Redis, its CA given in the URL
        env = on(server.url(query=f"ssl_ca_certs={certificates.ca}"))
        base = start_web(processes, **env)
        processes.start("worker", **env)
        processes.start("beat", **env)
        flower = start_flower(processes, ("ops", "flower-pw"), **env)
        wait_for(lambda: " ready." in processes.log_of("worker"), 60, what=processes.logs())

        # When alice triggers her import
        answer = asked(base, "post", f"/api/v1/imports/{imp.id}/run", token)

        # Then it runs to its end, health is up, Flower reads the broker
        assert answer.status_code == 202, answer.text
        run = ImportRun.objects.get(id=answer.json()["id"])
        wait_for(lambda: ImportRun.objects.get(id=run.id).status == "succeeded", 60,
                 what="the run\n" + processes.logs())  # fmt: skip
        health = asked(base, "get", "/api/v1/health", ops_token)
        assert health.status_code == 200, health.text
        assert health.json()["checks"]["broker"]["ok"] is True
        queues = requests.get(f"{flower}/api/queues/length", auth=("ops", "flower-pw"), timeout=30)
        assert queues.status_code == 200, queues.text
        assert "insecure SSL" not in processes.logs()
    assert PASSWORD not in processes.logs() + health.text + queues.text


def test_a_server_posing_as_the_tls_redis_is_refused_in_words_by_worker_web_and_api(
    alice, csv_server, processes, certificates
):
    imp = make_import(alice, csv_server.serve("/p.csv", PRODUCTS_CSV))
    token, ops_token = tokens(alice)
    # Given a server on the path posing as the Redis, with a certificate of its own making
    with tls_redis(certificates, "other_ca") as posing:
        env = on(posing.url(query=f"ssl_ca_certs={certificates.ca}"))

        # When the worker starts, and the web process is asked
        worker = processes.start("worker", **env)
        base = start_web(processes, **env)
        health = asked(base, "get", "/api/v1/health", ops_token)
        trigger = asked(base, "post", f"/api/v1/imports/{imp.id}/run", token)

        # Then the worker does not start, and says why
        assert refusal(processes, worker) == (
            f"importbeat worker not started: cannot reach the broker at 127.0.0.1:{posing.port}: "
            + NOT_SIGNED
        )
    # ... health is down, saying it, and alice's trigger is a 503 in words
    assert health.status_code == 503, health.text
    assert health.json()["checks"]["broker"]["error"] == (
        f"cannot reach the broker at 127.0.0.1:{posing.port}: {NOT_SIGNED}"
    )
    assert trigger.status_code == 503, trigger.text
    assert not CLASS_NAME.search(trigger.json()["detail"]), trigger.text
    assert PASSWORD not in processes.logs() + health.text + trigger.text


def test_a_wrong_password_is_said_in_words_and_shown_nowhere(alice, processes, certificates):
    _, ops_token = tokens(alice)
    with tls_redis(certificates) as server:
        # Given the URL of the right server with a wrong password
        wrong = "not-the-Redis-pw-77"
        env = on(server.url(password=wrong, query=f"ssl_ca_certs={certificates.ca}"))

        worker = processes.start("worker", **env)
        base = start_web(processes, **env)
        health = asked(base, "get", "/api/v1/health", ops_token)

        assert refusal(processes, worker) == (
            f"importbeat worker not started: the broker at 127.0.0.1:{server.port} refuses the "
            "login: the user name or password in its URL is wrong or missing, or that user is "
            "disabled in its ACL"
        )
    assert health.status_code == 503, health.text
    assert "refuses the login" in health.json()["checks"]["broker"]["error"]
    assert wrong not in processes.logs() + health.text
