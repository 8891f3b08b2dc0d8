"""`GET /api/v1/health` is `ok` with a real worker and beat (Procfile lines) running."""

import pytest
from rest_framework.test import APIClient

from tests.conftest import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]


def test_with_a_worker_and_beat_running_health_is_ok_and_names_them(processes, settings):
    settings.HEALTH_WORKER_PING_TIMEOUT = 1.0
    processes.start("worker", WORKER_NAME="healthy")
    processes.start("beat")

    def healthy():
        body = APIClient().get("/api/v1/health").json()
        return body if body["status"] == "ok" else None

    body = wait_for(healthy, 45, interval=1, what="status ok\n" + processes.logs())
    assert body["checks"]["workers"]["count"] == 1
    assert body["checks"]["workers"]["workers"][0].startswith("healthy@")
    assert body["checks"]["beat"]["leader"]
