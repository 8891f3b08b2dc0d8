"""The API of a real web process while its database refuses new connections (the database's
own switch, `ALLOW_CONNECTIONS false`, on this test's database only, and the web's kept
connections ended): a 503 in JSON that says so, with a Retry-After.

Regression (database hunt): every request answered the API's bare 500 "Internal server error."
with a traceback in the log, as a bug would; only /health said the database was away."""

import psycopg
import pytest
import requests
from django.conf import settings
from knox.models import AuthToken

from project.devservices import free_port
from tests.conftest import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]


def _refuse_connections(allow: bool) -> None:
    # Asked from the server's `postgres` database: a database cannot close itself. The test's
    # own connection is kept (pg_stat_activity: every other one of this database is ended).
    params = settings.DATABASES["default"]
    name = params["NAME"]
    from django.db import connection

    own = connection.cursor().connection.info.backend_pid
    with psycopg.connect(
        dbname="postgres",
        user=params["USER"],
        host=params["HOST"],
        port=params["PORT"] or None,
        autocommit=True,
    ) as other:
        other.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {str(allow).lower()}')
        if not allow:
            other.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> %s",
                [name, own],
            )


@pytest.fixture
def refused():
    yield lambda: _refuse_connections(False)
    _refuse_connections(True)


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
        "the database cannot be reached now, so nothing was read or changed; try again in a "
        "moment"
    )
    assert response.headers["Retry-After"] == "5"
