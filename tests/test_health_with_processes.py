"""`GET /api/v1/health` is `ok` with a real worker and beat (Procfile lines) running."""

import pytest

from tests.api_support import client_for
from tests.conftest import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]


def test_with_a_worker_and_beat_running_health_is_ok_and_names_them(
    processes, settings, django_user_model
):
    settings.HEALTH_WORKER_PING_TIMEOUT = 1.0
    # The names are for staff (anonymous callers get statuses only)
    staff = client_for(django_user_model.objects.create_user("ops", is_staff=True))
    processes.start("worker", WORKER_NAME="healthy")
    processes.start("beat")

    def healthy():
        body = staff.get("/api/v1/health").json()
        return body if body["status"] == "ok" else None

    body = wait_for(healthy, 45, interval=1, what="status ok\n" + processes.logs())
    assert body["checks"]["workers"]["count"] == 1
    assert body["checks"]["workers"]["workers"][0].startswith("healthy@")
    assert body["checks"]["beat"]["leader"]
