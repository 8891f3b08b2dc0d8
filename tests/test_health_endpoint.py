"""`GET /api/v1/health`: database, broker, beat's last tick and workers, public."""

from datetime import timedelta

import pytest
from django.utils import timezone
from django_celery_beat.models import PeriodicTask
from rest_framework.test import APIClient

from tests.api_support import API, SOURCE
from tests.factories import make_import

pytestmark = pytest.mark.django_db


def test_with_database_and_broker_up_it_answers_200_and_reports_each_dependency(
    alice, settings
):
    # Given no worker answers and beat has never dispatched
    settings.HEALTH_WORKER_PING_TIMEOUT = 0.2

    response = APIClient().get(f"{API}/health")

    assert response.status_code == 200
    body = response.json()
    checks = body["checks"]
    assert checks["database"]["ok"] is True and checks["broker"]["ok"] is True
    assert checks["workers"] == {"ok": False, "count": 0, "workers": []}
    assert checks["beat"]["last_tick"] is None
    assert body["status"] == "degraded"


def test_beat_last_tick_is_its_latest_dispatch(alice, settings):
    settings.HEALTH_WORKER_PING_TIMEOUT = 0.2
    imp = make_import(alice, SOURCE)
    sent = timezone.now() - timedelta(seconds=30)
    PeriodicTask.objects.filter(pk=imp.periodic_task_id).update(last_run_at=sent)

    beat = APIClient().get(f"{API}/health").json()["checks"]["beat"]

    assert beat["ok"] is True
    assert beat["last_tick"].startswith(sent.isoformat()[:19])
    assert 29 <= beat["seconds_ago"] < 60
