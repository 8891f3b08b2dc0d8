"""When the broker cannot take a run's message: a manual trigger answers 503 JSON with
Retry-After and leaves no run behind; a run already committed (a scheduled tick) is sent again
at reconciliation's next pass, not after its grace period (issue 16: an HTML 500, then 409 for
30 minutes), and not as a missed tick. While the broker cannot even be read, reconciliation
sends nothing and says so."""

import json
import logging
from unittest import mock

import kombu.exceptions
import pytest
import redis
from django.conf import settings as django_settings
from django.utils import timezone

from project.celery import app
from schedules import broker as broker_queues
from schedules import reconcile, services
from schedules.models import ImportRun, ScheduledImport
from tests.api_support import API, SOURCE, client_for, reset_throttle
from tests.factories import make_import

pytestmark = pytest.mark.django_db(transaction=True)

REFUSED = kombu.exceptions.OperationalError("Error 111 connecting to 127.0.0.1:6390.")


def broker(down: bool):
    """Celery's sender of task messages, refusing as a broker that is down would."""
    return mock.patch.object(
        services.current_app.amqp, "send_task_message", side_effect=REFUSED if down else None
    )


def test_a_trigger_while_the_broker_is_down_is_a_503_and_leaves_no_run(alice):
    imp = make_import(alice, SOURCE)
    reset_throttle("manual_run", alice.pk)
    client = client_for(alice)

    with broker(down=True):
        response = client.post(f"{API}/imports/{imp.pk}/run")

    assert response.status_code == 503
    assert response["Content-Type"] == "application/json"
    assert "no run was queued" in response.json()["detail"]
    assert int(response["Retry-After"]) == services.BROKER_RETRY_AFTER_SECONDS
    assert not imp.runs.exists()

    # And once the broker is back, the next trigger is queued, not a 409
    with broker(down=False) as send_task_message:
        again = client.post(f"{API}/imports/{imp.pk}/run")
    assert again.status_code == 202
    _, name, message = send_task_message.call_args.args
    assert name == message.headers["task"] == "importbeat.execute_run"
    assert message.body[0] == [again.json()["id"]]


def in_the_queue(task_id: str) -> bool:
    client = redis.Redis.from_url(django_settings.CELERY_BROKER_URL)
    return any(
        json.loads(raw)["headers"]["id"] == task_id
        for key in broker_queues.queue_keys(app.conf.task_default_queue)
        for raw in client.lrange(key, 0, -1)
    )


def test_a_committed_run_whose_message_failed_is_sent_again_at_the_next_pass(alice, settings):
    # Given a scheduled tick whose run was committed while the broker was down
    settings.MISSED_TICK_GRACE_SECONDS = 600
    imp = make_import(alice, SOURCE, catchup="skip")
    with broker(down=True):
        run = services.dispatch_scheduled_tick(imp.pk, timezone.now().isoformat())
    assert ImportRun.objects.get(pk=run.pk).status == "queued"
    assert not in_the_queue(run.celery_task_id)

    # When reconciliation runs (every MAINTENANCE_INTERVAL_SECONDS), the broker being back
    result = reconcile.reconcile()

    # Then the run's message is sent again at once, long before its grace period is over,
    # and its tick is not missed (an import that skips missed ticks still runs it)
    assert result["resent"] == 1
    assert in_the_queue(run.celery_task_id)
    run.refresh_from_db()
    assert (run.status, run.trigger) == ("queued", "schedule")
    assert ScheduledImport.objects.get(pk=imp.pk).missed_ticks == 0


def test_a_pass_while_the_broker_cannot_be_read_sends_nothing_and_says_so(
    alice, monkeypatch, caplog
):
    # Given a run whose message the broker refused
    imp = make_import(alice, SOURCE)
    with broker(down=True):
        run = services.dispatch_scheduled_tick(imp.pk, timezone.now().isoformat())

    # When reconciliation runs while the broker cannot be read (nothing listens there)
    # (Celery reads the broker's URL from the environment first.)
    real_url = app.conf.broker_url
    monkeypatch.setenv("CELERY_BROKER_URL", "redis://127.0.0.1:1/0")
    assert app.conf.broker_url == "redis://127.0.0.1:1/0"
    with caplog.at_level(logging.WARNING, logger="importbeat.reconcile"):
        assert reconcile.reconcile()["resent"] == 0

    # Then nothing is sent again (a blind resend would duplicate every waiting message), the
    # log says why, and the next pass, the broker back, sends it
    assert not in_the_queue(run.celery_task_id)
    assert "cannot tell which run messages are lost" in caplog.text
    monkeypatch.setenv("CELERY_BROKER_URL", real_url)
    assert reconcile.reconcile()["resent"] == 1
    assert in_the_queue(run.celery_task_id)


def test_a_runs_message_names_its_import_and_carries_its_time_limits(alice):
    imp = make_import(alice, SOURCE, name="prices", timeout_seconds=120)
    run = ImportRun.objects.create(scheduled_import=imp, trigger="api", celery_task_id="t-9")

    args, kwargs, options = services.run_message(run)

    assert (args, kwargs) == ([run.pk], {"import_id": imp.pk, "import_name": "prices"})
    assert options == {"soft_time_limit": 120, "time_limit": 150}
