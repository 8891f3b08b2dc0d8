"""`GET /api/v1/health` answers 503 from a real web process (Procfile `web`) whose database or
broker is down, naming which."""

import pytest
import requests

from project.devservices import free_port
from tests.conftest import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]


def health_of_a_web_process(processes, **env: str) -> requests.Response:
    port = free_port()
    processes.start("web", PORT=str(port), WEB_CONCURRENCY="1", **env)
    url = f"http://127.0.0.1:{port}/api/v1/health"

    def answer():
        try:
            # (a list: a 503 Response is falsy)
            return [requests.get(url, timeout=10)]
        except (requests.ConnectionError, requests.Timeout):
            return None

    return wait_for(answer, timeout=30, what="the web process\n" + processes.logs())[0]


def test_a_dead_broker_is_a_503_naming_the_broker(processes):
    dead = f"redis://127.0.0.1:{free_port()}/0"

    response = health_of_a_web_process(
        processes, CELERY_BROKER_URL=dead, CELERY_RESULT_BACKEND=dead, REDIS_URL=dead
    )

    assert response.status_code == 503, response.text
    checks = response.json()["checks"]
    assert checks["broker"]["ok"] is False and checks["database"]["ok"] is True
    assert response.json()["status"] == "down"


def test_a_dead_database_is_a_503_naming_the_database(processes):
    dead = f"postgres://nobody@127.0.0.1:{free_port()}/importbeat"

    response = health_of_a_web_process(processes, DATABASE_URL=dead)

    assert response.status_code == 503, response.text
    checks = response.json()["checks"]
    assert checks["database"]["ok"] is False and checks["broker"]["ok"] is True
    assert "127.0.0.1" not in response.text  # no hosts or credentials in a public answer
