"""`GET /api/v1/health` answers 503 from a real web process (Procfile `web`) whose database or
broker is down, naming which; staff read what could not be reached and why, in plain words
(issue: the exception's class name, `OperationalError`)."""

import pytest
import requests
from knox.models import AuthToken

from common.error_words import CLASS_NAME
from project.devservices import free_port
from tests.conftest import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]


def health_of_a_web_process(processes, token: str = "", **env: str) -> requests.Response:
    port = free_port()
    processes.start("web", PORT=str(port), WEB_CONCURRENCY="1", **env)
    url = f"http://127.0.0.1:{port}/api/v1/health"

    def answer():
        try:
            # (a list: a 503 Response is falsy)
            headers = {"Authorization": f"Token {token}"} if token else {}
            return [requests.get(url, headers=headers, timeout=10)]
        except (requests.ConnectionError, requests.Timeout):
            return None

    return wait_for(answer, timeout=30, what="the web process\n" + processes.logs())[0]


def test_a_dead_broker_is_a_503_naming_the_broker_and_why_in_plain_words(
    processes, django_user_model, refused_port
):
    port = refused_port
    dead = f"redis://:broker-secret@127.0.0.1:{port}/0"
    ops = django_user_model.objects.create_user("ops", is_staff=True)
    _, token = AuthToken.objects.create(user=ops, expiry=None)

    response = health_of_a_web_process(
        processes, token, CELERY_BROKER_URL=dead, CELERY_RESULT_BACKEND=dead, REDIS_URL=dead
    )

    assert response.status_code == 503, response.text
    checks = response.json()["checks"]
    assert checks["broker"]["ok"] is False and checks["database"]["ok"] is True
    assert response.json()["status"] == "down"
    # ... and staff read where and why, with no class name nor password
    error = checks["broker"]["error"]
    assert error == f"cannot reach the broker at 127.0.0.1:{port}: connection refused"
    assert not CLASS_NAME.search(response.text), response.text
    assert "broker-secret" not in response.text


def test_a_dead_database_is_a_503_naming_the_database(processes, refused_port):
    dead = f"postgres://nobody@127.0.0.1:{refused_port}/importbeat"

    response = health_of_a_web_process(processes, DATABASE_URL=dead)

    assert response.status_code == 503, response.text
    checks = response.json()["checks"]
    assert checks["database"]["ok"] is False and checks["broker"]["ok"] is True
    assert "127.0.0.1" not in response.text  # no hosts or credentials in a public answer
