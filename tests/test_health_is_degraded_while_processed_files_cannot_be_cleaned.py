"""`GET /api/v1/health` is `degraded` (200: nothing is down) while the last retention job could
not delete old processed files or left a `processed` entry alone, and says how many and what to
do; the dashboard's health panel says the same. Before, only `/metrics` and the worker's log
said so, and a drop folder filled unseen by whoever watches the health check."""

from __future__ import annotations

import time

import pytest

from tasks import maintenance
from tests.api_support import API, client_for
from tests.conftest import wait_for
from tests.drop_support import put, undeletable
from tests.factories import make_import

pytestmark = pytest.mark.django_db

LONG_AGO = time.time() - 40 * 86400


@pytest.fixture
def staff(django_user_model):
    ops = django_user_model.objects.create_user("ops", "ops@example.com", "x", is_staff=True)
    return client_for(ops)


@pytest.fixture
def filing(alice, drop, settings):
    settings.PROCESSED_FILE_RETENTION_DAYS = 30
    settings.HEALTH_WORKER_PING_TIMEOUT = 0.2
    return make_import(alice, f"file://{drop}/products_*.csv", move_processed=True)


def test_a_file_the_retention_could_not_delete_is_counted_with_what_to_do(filing, drop, staff):
    # Given an old processed file the workers may not delete, and another that goes
    (drop / "processed").mkdir()
    put(drop / "processed" / "products_1.csv", "x", mtime=LONG_AGO)
    stuck = put(drop / "processed" / "products_2.csv", "x", mtime=LONG_AGO)

    # When the retention job has run
    with undeletable(stuck):
        maintenance.delete_old_runs()
        response = staff.get(f"{API}/health")

    # Then health says so, and what to do, without failing the load balancer's check
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "degraded"
    assert body["checks"]["processed_files"] == {
        "ok": False,
        "not_deleted": 1,
        "folders_left_alone": 0,
        "message": "1 old processed file in drop folders could not be deleted by the last "
        "retention job: give the workers write access to their processed/ folders (the "
        "workers' log names each file and why)",
    }


def test_a_processed_that_is_a_file_is_counted_and_anonymous_callers_see_only_not_ok(
    filing, drop, staff, client
):
    put(drop / "processed", "x")

    maintenance.delete_old_runs()

    check = staff.get(f"{API}/health").json()["checks"]["processed_files"]
    assert check["folders_left_alone"] == 1
    assert check["message"].startswith("1 processed/ folder left alone by the last retention job")
    assert "replace it with a folder" in check["message"]
    assert client.get(f"{API}/health").json()["checks"]["processed_files"] == {"ok": False}


def test_the_dashboards_health_panel_says_the_same(filing, drop, client, django_user_model):
    put(drop / "processed", "x")

    maintenance.delete_old_runs()

    client.force_login(django_user_model.objects.create_user("sam", is_staff=True))
    panel = {item["name"]: item for item in client.get("/dashboard/health.json").json()["health"]}
    assert panel["processed files"]["state"] == "warn"
    assert panel["processed files"]["text"].startswith("1 processed/ folder left alone")


def test_a_retention_that_deleted_everything_is_ok(filing, drop, staff):
    (drop / "processed").mkdir()
    put(drop / "processed" / "products_1.csv", "x", mtime=LONG_AGO)

    maintenance.delete_old_runs()

    check = staff.get(f"{API}/health").json()["checks"]["processed_files"]
    assert check == {"ok": True, "not_deleted": 0, "folders_left_alone": 0}


@pytest.mark.django_db(transaction=True)
@pytest.mark.processes
def test_a_healthy_cluster_turns_degraded_and_back_with_the_retentions_figures(
    processes, filing, drop, settings, django_user_model
):
    # Given a worker and beat running, and health ok
    settings.HEALTH_WORKER_PING_TIMEOUT = 1.0
    staff = client_for(django_user_model.objects.create_user("ops", is_staff=True))
    processes.start("worker", WORKER_NAME="healthy")
    processes.start("beat")

    def status() -> str:
        return staff.get(f"{API}/health").json()["status"]

    wait_for(lambda: status() == "ok", 45, interval=1, what="status ok\n" + processes.logs())

    # When a retention job leaves a `processed` that is a file alone
    put(drop / "processed", "x")
    maintenance.delete_old_runs()

    # Then health is degraded, with 200
    response = staff.get(f"{API}/health")
    assert (response.status_code, response.json()["status"]) == (200, "degraded")

    # and ok again after the next job, once the operator made it a folder
    (drop / "processed").unlink()
    (drop / "processed").mkdir()
    maintenance.delete_old_runs()
    assert status() == "ok"
