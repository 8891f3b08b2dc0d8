"""`POST /imports/{id}/run` while the broker is down, through the real web process: a 503 JSON
answer with Retry-After and no run left behind; once the broker is back, the next trigger is
queued and runs (issue 16: an HTML 500, a `queued` run with no message, and 409 for 30 min)."""

import time

import pytest
import requests
from knox.models import AuthToken

from project.devservices import free_port
from schedules.models import ImportRun
from tests.conftest import answers, wait_for
from tests.factories import PRODUCTS_CSV, make_import
from tests.reliability import FAST, redis_server

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]


def test_a_trigger_while_the_broker_is_down_is_a_503_and_the_next_one_runs(
    alice, csv_server, processes, tmp_path
):
    # Given the web process on a broker of its own, and an import
    imp = make_import(alice, csv_server.serve("/p.csv", PRODUCTS_CSV))
    _, token = AuthToken.objects.create(user=alice, expiry=None)
    headers = {"Authorization": f"Token {token}"}
    port = free_port()
    url = f"http://127.0.0.1:{port}/api/v1/imports/{imp.pk}/run"
    with redis_server(free_port(), tmp_path) as broker:
        processes.start("web", PORT=str(port), CELERY_BROKER_URL=broker.url)
        wait_for(lambda: answers(f"http://127.0.0.1:{port}/admin/login/"), 30,
                 what="gunicorn\n" + processes.logs())  # fmt: skip

        # When the broker dies and alice triggers the import
        broker.kill()
        started = time.monotonic()
        refused = requests.post(url, headers=headers, timeout=30)
        answered_in = time.monotonic() - started

        # Then she gets a 503 in JSON with a Retry-After, and no run is left to block her
        print(f"\n[figures] trigger with the broker down: answered in {answered_in:.2f}s")
        assert refused.status_code == 503, refused.text
        assert refused.headers["Content-Type"] == "application/json"
        assert "no run was queued" in refused.json()["detail"]
        assert int(refused.headers["Retry-After"]) > 0
        assert not ImportRun.objects.filter(scheduled_import=imp).exists()

        # And once the broker is back, her next trigger is queued (202, not 409) and runs
        broker.start()
        processes.start("worker", CELERY_BROKER_URL=broker.url, **FAST)
        queued = requests.post(url, headers=headers, timeout=30)
        assert queued.status_code == 202, queued.text
        run = wait_for(
            lambda: ImportRun.objects.filter(pk=queued.json()["id"], status="succeeded").first(),
            60,
            what="the run to succeed\n" + processes.logs(),
        )
        assert run.rows_inserted == 3
