"""When the broker cannot take a run's message: a manual trigger answers 503 JSON with
Retry-After and leaves no run behind; a run already committed (a scheduled tick) is sent again
at the sweep's next pass, not after STALE_QUEUED_SECONDS (issue 16: an HTML 500, then 409 for
30 minutes)."""

from unittest import mock

import kombu.exceptions
import pytest
from django.utils import timezone

from schedules import services
from schedules.models import ImportRun
from tasks import maintenance
from tests.api_support import API, SOURCE, client_for, reset_throttle
from tests.factories import make_import

pytestmark = pytest.mark.django_db(transaction=True)

REFUSED = kombu.exceptions.OperationalError("Error 111 connecting to 127.0.0.1:6390.")


def broker(down: bool):
    return mock.patch.object(
        services.current_app, "send_task", side_effect=REFUSED if down else None
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
    with broker(down=False) as send_task:
        again = client.post(f"{API}/imports/{imp.pk}/run")
    assert again.status_code == 202
    assert send_task.call_args.args == ("importbeat.execute_run",)
    assert send_task.call_args.kwargs["args"] == [again.json()["id"]]


def test_a_committed_run_whose_message_failed_is_sent_again_at_the_next_sweep(alice, settings):
    # Given a scheduled tick whose run was committed while the broker was down
    settings.STALE_QUEUED_SECONDS = 1800
    imp = make_import(alice, SOURCE)
    with broker(down=True):
        run = services.dispatch_scheduled_tick(imp.pk, timezone.now().isoformat())
    assert ImportRun.objects.get(pk=run.pk).status == "queued"

    # When the sweep runs (every MAINTENANCE_INTERVAL_SECONDS), the broker being back
    with broker(down=False) as send_task:
        swept = maintenance.sweep_runs()

    # Then the run's message is sent again at once
    assert swept["resent"] == 1
    assert send_task.call_args.kwargs["task_id"] == run.celery_task_id


def test_a_sweep_while_the_broker_is_still_down_tries_again_next_time(alice):
    imp = make_import(alice, SOURCE)
    with broker(down=True):
        services.dispatch_scheduled_tick(imp.pk, timezone.now().isoformat())
        assert maintenance.sweep_runs()["resent"] == 0
    with broker(down=False):
        assert maintenance.sweep_runs()["resent"] == 1


def test_a_runs_message_names_its_import_and_carries_its_time_limits(alice):
    imp = make_import(alice, SOURCE, name="prices", timeout_seconds=120)
    run = ImportRun.objects.create(scheduled_import=imp, trigger="api", celery_task_id="t-9")

    args, kwargs, options = services.run_message(run)

    assert (args, kwargs) == ([run.pk], {"import_id": imp.pk, "import_name": "prices"})
    assert options == {"soft_time_limit": 120, "time_limit": 150}
