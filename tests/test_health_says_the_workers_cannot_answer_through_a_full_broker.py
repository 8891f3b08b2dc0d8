"""While the broker refuses writes, health says the workers cannot answer through it.

A live worker cannot answer health's ping through a full Redis: its reply is a write. Before,
`/api/v1/health` answered `"workers": {"ok": false, "count": 0, "workers": [], "broken": []}`
with no word of why, beside the broker's refusal, and the dashboard said "no worker answers":
which invites a restart of the workers, and a worker started on a full Redis exits at once
(the one that would take the runs behind once Redis has room).
"""

from __future__ import annotations

import pytest
import redis.exceptions

from common import broker_probe
from schedules import dashboard
from tests.api_support import API, client_for

pytestmark = pytest.mark.django_db

NOT_COUNTED = "the workers cannot answer through the broker, so they are not counted: "
FULL = "Redis is full: it reached its maxmemory and evicts nothing; free memory or raise maxmemory"


def refuse_writes(*args, **kwargs):
    """broker_probe.probe on a Redis at its maxmemory that evicts nothing."""
    raise redis.exceptions.OutOfMemoryError("command not allowed when used memory > 'maxmemory'.")


def test_health_and_the_dashboard_say_the_workers_cannot_answer_through_a_full_broker(
    django_user_model, monkeypatch, settings
):
    settings.HEALTH_WORKER_PING_TIMEOUT = 0.2
    ops = django_user_model.objects.create_user("ops", is_staff=True)
    # Given a broker that answers but refuses every write (full)
    monkeypatch.setattr(broker_probe, "probe", refuse_writes)

    # When staff ask for health
    checks = client_for(ops).get(f"{API}/health").json()["checks"]

    # Then the broker says it is full, and the workers say they cannot answer through it,
    # not that none are there
    assert checks["broker"]["ok"] is False and checks["broker"]["error"].endswith(FULL)
    workers = checks["workers"]
    assert workers["ok"] is False
    assert workers["count"] != 0, workers
    assert workers.get("message") == NOT_COUNTED + checks["broker"]["error"], workers

    # And the dashboard says the same
    (panel,) = [entry for entry in dashboard.health_panel() if entry["name"] == "workers"]
    assert panel["state"] == "bad"
    assert panel["text"] == NOT_COUNTED + checks["broker"]["error"], panel
