"""`GET /api/v1/health`: database, broker, beat's last tick and workers, public."""

from datetime import timedelta

import pytest
from django.utils import timezone

from common.redis_client import LAST_TICK_KEY, LEADER_LEASE, client
from tests.api_support import API, client_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(django_user_model):
    # The details (names, last tick) are for staff; anonymous callers get statuses only.
    ops = django_user_model.objects.create_user("ops", "ops@example.com", "x", is_staff=True)
    return client_for(ops)


def test_with_database_and_broker_up_it_answers_200_and_reports_each_dependency(
    alice, settings, staff
):
    # Given no worker answers and beat has never dispatched
    settings.HEALTH_WORKER_PING_TIMEOUT = 0.2

    response = staff.get(f"{API}/health")

    assert response.status_code == 200
    body = response.json()
    checks = body["checks"]
    assert checks["database"]["ok"] is True and checks["broker"]["ok"] is True
    assert checks["workers"] == {"ok": False, "count": 0, "workers": [], "broken": []}
    assert checks["beat"]["last_tick"] is None
    assert body["status"] == "degraded"


def test_beat_is_up_while_a_beat_holds_the_leader_lease_and_reports_its_last_tick(
    alice, settings, staff
):
    # Given a beat that last looked for due imports 30 s ago and holds the leader lease
    settings.HEALTH_WORKER_PING_TIMEOUT = 0.2
    sent = timezone.now() - timedelta(seconds=30)
    client().set(LAST_TICK_KEY, f"{sent.timestamp():.3f}")
    client().set(LEADER_LEASE, "beat-host-1:0123abcd", ex=30)

    try:
        beat = staff.get(f"{API}/health").json()["checks"]["beat"]
    finally:
        client().delete(LEADER_LEASE, LAST_TICK_KEY)

    assert beat["ok"] is True and beat["leader"] == "beat-host-1"
    assert beat["last_tick"].startswith(sent.isoformat()[:19])
    assert 29 <= beat["seconds_ago"] < 60
