"""A run cancelled while it waits for its retry shows REVOKED in Flower at once, not RETRY until
its countdown ends (up to `retry_backoff_max_seconds`: 465 s in the outcomes hunt), while the
run log, the API, the admin and the dashboard said `cancelled` (schedules.revoked_tasks)."""

from __future__ import annotations

import re

import pytest
import requests

from schedules import services
from schedules.models import ImportRun
from tests.api_support import API, client_for
from tests.conftest import wait_for
from tests.factories import make_import
from tests.reliability import FAST, start_flower

AUTH = ("ops", "s3cret-flower")
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]


def flower_state(base: str, task_id: str) -> str | None:
    answer = requests.get(f"{base}/api/task/info/{task_id}", auth=AUTH, timeout=5)
    return answer.json().get("state") if answer.status_code == 200 else None


@pytest.mark.parametrize("how", ["run", "import"])
def test_a_run_cancelled_in_its_backoff_is_revoked_in_flower_at_once(
    alice, csv_server, processes, how
):
    # Given a run waiting for its retry longer than the test looks (full jitter: tried again
    # in the rare case it drew a short wait), which Flower shows waiting
    processes.start("worker", **FAST)
    base = start_flower(processes, AUTH)
    url = csv_server.serve("/busy.csv", b"busy", status=503)
    for attempt in range(5):
        imp = make_import(alice, url, name=f"busy-{attempt}", dataset=f"busy-{attempt}",
                          max_retries=3, retry_backoff_seconds=600,
                          retry_backoff_max_seconds=600)  # fmt: skip
        run = services.enqueue_run(imp, trigger="api", user=alice)
        run = wait_for(
            lambda run=run: ImportRun.objects.filter(pk=run.pk, status="retrying").first(), 30,
            what="the run to back off\n" + processes.logs(),
        )  # fmt: skip
        if int(re.search(r"retrying in (\d+)s", run.error_message).group(1)) > 40:
            break
    wait_for(lambda: flower_state(base, run.celery_task_id) in ("RETRY", "RECEIVED"), 20,
             what="Flower to see the retry")  # fmt: skip

    # When it is cancelled, alone or with its import
    target = f"{API}/runs/{run.pk}/cancel" if how == "run" else f"{API}/imports/{imp.pk}/cancel"
    assert client_for(alice).post(target).status_code == 200

    # Then Flower says it is over within seconds, as every other surface does
    wait_for(lambda: flower_state(base, run.celery_task_id) == "REVOKED", 10,
             what="Flower to say REVOKED")  # fmt: skip
    assert ImportRun.objects.get(pk=run.pk).status == "cancelled"
