"""The API of a real web process while its database refuses new connections (the database's
own switch, `ALLOW_CONNECTIONS false`, on this test's database only, and the web's kept
connections ended): a 503 in JSON that says so, with a Retry-After.

Regression (database hunt): every request answered the API's bare 500 "Internal server error."
with a traceback in the log, as a bug would; only /health said the database was away."""

import logging

import psycopg
import pytest
import requests
from django.db import connection
from knox.models import AuthToken
from rest_framework.test import APIClient

from project.devservices import free_port
from tests.conftest import wait_for
from tests.reliability import refuse_connections

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]


@pytest.fixture
def refused():
    yield lambda: refuse_connections(False)
    refuse_connections(True)


@pytest.mark.parametrize("path", ["/api/v1/imports/", "/api/v1/runs/", "/api/v1/me"])
def test_the_api_says_503_when_the_database_refuses_connections(alice, processes, refused, path):
    _, token = AuthToken.objects.create(user=alice, expiry=None)
    port = free_port()
    processes.start("web", PORT=str(port), WEB_CONCURRENCY="1")
    url = f"http://127.0.0.1:{port}{path}"
    headers = {"Authorization": f"Token {token}"}

    def answer():
        try:
            return [requests.get(url, headers=headers, timeout=10)]
        except (requests.ConnectionError, requests.Timeout):
            return None

    first = wait_for(answer, 30, what="the web process\n" + processes.logs())[0]
    assert first.status_code == 200, first.text

    # When the database refuses every new connection
    refused()
    response = requests.get(url, headers=headers, timeout=30)

    # Then the API says the database is unavailable, in JSON, with a Retry-After
    print(response.status_code, response.headers.get("Retry-After"), response.text[:300])
    assert response.headers["Content-Type"].startswith("application/json"), response.text
    assert response.status_code == 503, response.text
    assert response.json()["detail"] == (
        "the database cannot be reached now, so nothing was read or changed; try again in a moment"
    )
    assert response.headers["Retry-After"] == "5"


REFUSAL = 'connection failed: FATAL:  password authentication failed for user "importbeat"'


def alices_client_where_the_database_refuses(alice, monkeypatch, refusal: str) -> APIClient:
    """Alice's API client, and a database that refuses the web's new connections, saying
    `refusal` (monkeypatch.undo() lets it in again)."""
    _, token = AuthToken.objects.create(user=alice, expiry=None)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    connection.close()

    def refuse(*_args, **_kwargs):
        raise psycopg.OperationalError(refusal)

    monkeypatch.setattr(connection, "get_new_connection", refuse)
    return client


def test_the_log_of_a_503_for_a_refused_connection_says_why(alice, monkeypatch, caplog):
    # A 503 logged only its own words: a password rotated read as a restart that will pass
    # (review)
    # Given the database refuses the web's connections for a reason that will not pass
    client = alices_client_where_the_database_refuses(alice, monkeypatch, REFUSAL)

    # When a request comes
    with caplog.at_level(logging.WARNING):
        response = client.get("/api/v1/imports/")
    monkeypatch.undo()

    # Then it is a 503, and the log says why the database refused
    logged = "\n".join(
        f"{record.getMessage()} {record.exc_text or ''}" for record in caplog.records
    )
    assert response.status_code == 503
    assert "password authentication failed" in logged, logged
