"""`GET /api/v1/health` is `degraded` (200: nothing is down) while notifications have waited
past the sweep's resend and the e-mail interval: a mail server or callbacks that take nothing.
Before, each import's delivery log said so for itself, and whoever watches the health check
learned nothing while no alert reached anyone."""

from __future__ import annotations

from datetime import timedelta

import pytest
import redis
from django.utils import timezone

from common.redis_client import TURN_LINES_KEY, turn_line_key
from schedules.models import NotificationDelivery
from tests.api_support import API, client_for
from tests.factories import make_import
from tests.webhook_support import forget_redis_keys

pytestmark = pytest.mark.django_db

SOURCE = "https://files.example.com/p.csv"


@pytest.fixture
def staff(django_user_model, settings):
    settings.HEALTH_WORKER_PING_TIMEOUT = 0.2
    ops = django_user_model.objects.create_user("ops", "ops@example.com", "x", is_staff=True)
    return client_for(ops)


def waiting_since(imp, status: str, ago: timedelta) -> NotificationDelivery:
    return NotificationDelivery.objects.create(
        scheduled_import=imp, event="failed", channel="email", status=status,
        created_at=timezone.now() - ago,
    )  # fmt: skip


def test_notifications_stuck_past_the_resend_and_the_interval_degrade_health(
    alice, staff, settings
):
    # Given notifications that waited 36 minutes (the resend after 30, the interval 5)
    imp = make_import(alice, SOURCE)
    for status in ("retrying", "held"):
        waiting_since(imp, status, timedelta(minutes=36))
    waiting_since(imp, "delivered", timedelta(days=1))

    body = staff.get(f"{API}/health").json()

    # Then health is degraded, and says how many, since when and where to look
    notifications = body["checks"]["notifications"]
    assert (notifications["ok"], notifications["stuck"]) == (False, 2)
    assert body["status"] == "degraded"
    assert notifications["message"].startswith("2 notifications waited over 35 minutes")
    assert (
        "the mail server (EMAIL_URL) or the callbacks do not take them"
        in (notifications["message"])
    )


def test_notifications_waiting_their_turn_leave_health_alone(alice, staff):
    # An e-mail held for the owner's next one, a webhook retrying: minutes, not stuck
    imp = make_import(alice, SOURCE)
    waiting_since(imp, "held", timedelta(minutes=4))
    waiting_since(imp, "retrying", timedelta(minutes=20))

    notifications = staff.get(f"{API}/health").json()["checks"]["notifications"]

    assert notifications == {"ok": True, "stuck": 0}


def test_anyone_else_sees_only_that_notifications_are_not_ok(alice, client):
    waiting_since(make_import(alice, SOURCE), "pending", timedelta(hours=2))

    body = client.get(f"{API}/health").json()

    assert body["checks"]["notifications"] == {"ok": False}


def test_the_dashboards_health_panel_says_the_same(alice, client, django_user_model):
    waiting_since(make_import(alice, SOURCE), "retrying", timedelta(hours=2))

    client.force_login(django_user_model.objects.create_user("sam", is_staff=True))
    panel = {item["name"]: item for item in client.get("/dashboard/health.json").json()["health"]}

    assert panel["notifications"]["state"] == "warn"
    assert panel["notifications"]["text"].startswith("1 notification waited over 35 minutes")


def test_stuck_notifications_waiting_their_turn_are_told_apart(alice, staff, settings):
    """A long line of notifications (tasks.turns) is a relay or receivers slower than the
    notifications come, not ones that take nothing: health says how many wait their turn, and
    what shortens the mail relay's line."""
    settings.EMAIL_CONCURRENCY = 2
    waiting_since(make_import(alice, SOURCE), "pending", timedelta(minutes=40))
    store = redis.Redis.from_url(settings.REDIS_URL)
    store.hset(TURN_LINES_KEY, mapping={"mail": 2, "owner:7": 1})
    store.rpush(turn_line_key("mail"), "a", "b", "c")
    store.rpush(turn_line_key("owner:7"), "d", "e")
    try:
        notifications = staff.get(f"{API}/health").json()["checks"]["notifications"]
    finally:
        forget_redis_keys("importbeat:turns:*")

    assert notifications["parked"] == {"mail": 3, "owner": 2}
    assert notifications["message"].endswith(
        "Waiting their turn now: 3 behind the mail relay, which takes EMAIL_CONCURRENCY (2) at"
        " a time: raise it if the relay can take more; 2 behind an earlier webhook of their owner"
    )
