"""A run that waits for its import's running run (`overlap: queue`) is delivered again later by
Celery's retry, which Flower shows as RETRY: its exception says that the run waits, for whom,
and that it is no attempt. It said 'None', and an operator read retries=7 as seven failed
attempts of a run the run log says ran once."""

import pytest
import requests

from schedules import services
from schedules.models import ImportRun
from tests.conftest import wait_for
from tests.factories import make_import
from tests.reliability import FAST, big_csv, start_flower, wait_for_the_end

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]

AUTH = ("ops", "s3cret-flower")


def test_a_waiting_runs_retries_in_flower_say_it_waits(alice, csv_server, processes):
    # Given a worker with two slots, Flower, and an `overlap: queue` import running a slow file
    processes.start("worker", **{**FAST, "WORKER_CONCURRENCY": "2"})
    base = start_flower(processes, AUTH)
    url = csv_server.serve("/slow.csv", big_csv(20_000), chunk_delay=1.0)
    imp = make_import(alice, url, overlap="queue", timeout_seconds=120)
    first = services.enqueue_run(imp, trigger="api", user=alice)
    wait_for(lambda: ImportRun.objects.get(pk=first.pk).status == "running", 30)

    # When its next tick comes while that run goes on: it waits, then runs once
    second = wait_for_the_end(services.dispatch_scheduled_tick(imp.pk, None, "schedule"),
                              processes, 90)  # fmt: skip
    assert (second.status, second.attempts) == ("succeeded", 1)

    # Then Flower's task says what its retries were: waits, not attempts
    task = wait_for(
        lambda: (t := requests.get(f"{base}/api/tasks", auth=AUTH, timeout=5).json().get(
            second.celery_task_id)) and t.get("state") == "SUCCESS" and t,
        30,
        what="the task in Flower\n" + processes.logs(),
    )  # fmt: skip
    # (the last look may come as the first run ends, its lease gone: "another run"; it said
    # "run None", a CI run)
    said = task["exception"]
    assert any(
        f"run {second.pk} waits for {holder} (not an attempt)" in said
        for holder in (f"run {first.pk}", "another run")
    ), said
