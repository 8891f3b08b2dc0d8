"""Anonymous callers learn statuses, not names: `/api/v1/health` without a staff token, and
Flower's `/metrics` without credentials (issue 11, point 4).

Regression: Flower's /metrics answered without credentials (task names, worker host names,
pids), and the public health check showed beat's host and pid and the workers' names.
"""

import time

import pytest
import requests
from rest_framework.test import APIClient

from common.redis_client import LAST_TICK_KEY, LEADER_LEASE, client
from project.devservices import free_port
from tests.api_support import API, client_for
from tests.conftest import wait_for


@pytest.fixture
def leader():
    # A beat leads and has just looked for due imports.
    client().set(LEADER_LEASE, "beat-vm-14365:0123abcd", ex=30)
    client().set(LAST_TICK_KEY, f"{time.time():.3f}")
    yield
    client().delete(LEADER_LEASE, LAST_TICK_KEY)


@pytest.mark.django_db
def test_anonymous_and_ordinary_callers_get_statuses_only(alice, leader, settings):
    settings.HEALTH_WORKER_PING_TIMEOUT = 0.2

    for caller in (APIClient(), client_for(alice)):
        response = caller.get(f"{API}/health")

        assert response.status_code == 200
        body = response.json()
        assert set(body) == {"status", "time", "checks"}
        assert all(set(check) == {"ok"} for check in body["checks"].values())
        assert body["checks"]["beat"] == {"ok": True}
        assert "beat-vm" not in response.content.decode()


@pytest.mark.django_db
def test_a_staff_token_sees_the_names(django_user_model, leader, settings):
    settings.HEALTH_WORKER_PING_TIMEOUT = 0.2
    ops = django_user_model.objects.create_user("ops", is_staff=True)

    body = client_for(ops).get(f"{API}/health").json()

    assert body["checks"]["beat"]["leader"] == "beat-vm-14365"
    assert "workers" in body["checks"]["workers"]


@pytest.mark.django_db
def test_a_bad_token_is_answered_like_an_anonymous_caller():
    caller = APIClient()
    caller.credentials(HTTP_AUTHORIZATION="Token ib_not-a-real-token")

    response = caller.get(f"{API}/health")

    assert response.status_code == 200
    assert all(set(check) == {"ok"} for check in response.json()["checks"].values())


@pytest.mark.django_db(transaction=True)
@pytest.mark.processes
def test_flower_metrics_need_the_credentials(processes):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    auth = ("ops", "s3cret-flower")
    processes.start("flower", FLOWER_PORT=str(port), FLOWER_BASIC_AUTH=":".join(auth))

    def up():
        try:
            return [requests.get(f"{base}/healthcheck", timeout=2)]
        except (requests.ConnectionError, requests.Timeout):
            return None

    wait_for(up, 30, what="flower\n" + processes.logs())

    anonymous = requests.get(f"{base}/metrics", timeout=5)
    assert anonymous.status_code == 401
    assert "flower_" not in anonymous.text
    assert requests.get(f"{base}/metrics", auth=auth, timeout=5).status_code == 200
