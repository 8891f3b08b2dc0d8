"""`POST /runs/{id}/retry`: a failed or timed-out run's import runs again now, as a new run
naming the one it retries."""

import pytest

from schedules.models import ImportRun
from tests.api_support import API, SOURCE, client_for, make_run, reset_throttle
from tests.factories import make_import

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_manual_run_budget(alice):
    reset_throttle("manual_run", alice.pk)


@pytest.mark.parametrize("status", ["failed", "timed_out"])
def test_a_failed_run_is_retried_as_a_new_queued_run(alice, status):
    failed = make_run(make_import(alice, SOURCE), status)

    response = client_for(alice).post(f"{API}/runs/{failed.pk}/retry")

    assert response.status_code == 202, response.json()
    body = response.json()
    assert body["status"] == "queued" and body["retry_of"] == failed.pk
    assert body["trigger"] == "api" and body["triggered_by"] == "alice"
    assert ImportRun.objects.get(pk=body["id"]).retry_of_id == failed.pk


@pytest.mark.parametrize("status", ["succeeded", "partial", "queued", "running", "cancelled"])
def test_only_a_failed_or_timed_out_run_can_be_retried(alice, status):
    run = make_run(make_import(alice, SOURCE), status)

    response = client_for(alice).post(f"{API}/runs/{run.pk}/retry")

    assert response.status_code == 409
    assert "only a failed or timed-out run can be retried" in response.json()["detail"]


def test_a_retry_while_another_run_is_active_is_a_409_naming_it(alice):
    imp = make_import(alice, SOURCE)
    failed = make_run(imp, "failed")
    active = make_run(imp, "running")

    response = client_for(alice).post(f"{API}/runs/{failed.pk}/retry")

    assert response.status_code == 409
    assert response.json()["active_run_id"] == active.pk
