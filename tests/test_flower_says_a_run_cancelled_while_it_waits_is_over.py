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
    wait_for(lambda: flower_state(base, run.celery_task_id) == "REVOKED", 30,
             what="Flower to say REVOKED")  # fmt: skip
    assert ImportRun.objects.get(pk=run.pk).status == "cancelled"


@pytest.mark.parametrize("how", ["run", "import"])
def test_a_run_cancelled_in_its_owners_line_is_revoked_in_flower_at_once(
    alice, csv_server, processes, how
):
    # A parked run has no worker of its own (it never ran), so Flower was told nothing and its
    # task stayed RETRY for ever: nothing delivers a parked run again once it is cancelled
    # (review). The worker that parked it tells.
    from tests.factories import PRODUCTS_CSV
    from tests.reliability import big_csv

    processes.start("worker", **{**FAST, "WORKER_CONCURRENCY": "2", "MAX_RUNNING_PER_OWNER": "1"})
    base = start_flower(processes, AUTH)
    slow = make_import(alice, csv_server.serve("/slow.csv", big_csv(20_000), chunk_delay=1.0),
                       name="slow", dataset="slow")  # fmt: skip
    slow_run = services.enqueue_run(slow, trigger="manual", user=alice)
    wait_for(lambda: ImportRun.objects.get(pk=slow_run.pk).status == "running", 30)
    quick = make_import(alice, csv_server.serve("/q.csv", PRODUCTS_CSV), name="q", dataset="q")
    parked = services.enqueue_run(quick, trigger="api", user=alice)
    wait_for(lambda: flower_state(base, parked.celery_task_id) == "RETRY", 30,
             what="Flower to see the parked task\n" + processes.logs())  # fmt: skip

    target = (
        f"{API}/runs/{parked.pk}/cancel" if how == "run" else f"{API}/imports/{quick.pk}/cancel"
    )
    assert client_for(alice).post(target).status_code == 200

    wait_for(lambda: flower_state(base, parked.celery_task_id) == "REVOKED", 30,
             what="Flower to say REVOKED")  # fmt: skip
    services.cancel_run(slow_run)
