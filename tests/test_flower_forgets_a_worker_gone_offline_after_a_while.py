"""A worker killed outright (SIGKILL, a machine lost, a container scaled away) says no goodbye:
Flower lists it offline, and kept it, with its Prometheus series, for as long as Flower kept its
state (persistent: for ever). Each deploy under `--scale worker=N` left N more. Flower now
forgets a worker offline for `FLOWER_PURGE_OFFLINE_WORKERS` seconds (a day by default), from
its workers page and its /metrics."""

import signal

import pytest
import requests

from project.devservices import free_port
from tests.conftest import answers, procfile_command, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]

AUTH = ("ops", "s3cret-flower")


def test_flower_lists_a_killed_worker_offline_then_forgets_it(processes):
    # Given Flower told to forget a worker offline for 3 s, and two workers it has seen
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    processes.start(
        "flower",
        FLOWER_PORT=str(port),
        FLOWER_BASIC_AUTH=":".join(AUTH),
        FLOWER_PURGE_OFFLINE_WORKERS="3",
    )
    processes.start("worker", WORKER_NAME="stays")
    gone = processes.start("worker", WORKER_NAME="gone")
    wait_for(lambda: answers(f"{base}/healthcheck"), 30, what="flower\n" + processes.logs())

    def workers() -> dict[str, bool]:
        page = requests.get(f"{base}/workers?json=1", auth=AUTH, timeout=5).json()
        return {row["hostname"].split("@")[0]: row["status"] for row in page["data"]}

    wait_for(
        lambda: workers() == {"stays": True, "gone": True},
        60,
        what="both workers online in flower\n" + processes.logs(),
    )

    # When one is killed outright
    processes.stop(gone, sig=signal.SIGKILL)

    # Then Flower forgets it once it has been offline that long, and keeps the other
    wait_for(
        lambda: workers() == {"stays": True}, 60, what=f"the killed worker forgotten: {workers()}"
    )
    metrics = requests.get(f"{base}/metrics", auth=AUTH, timeout=5).text
    online = [line for line in metrics.splitlines() if line.startswith("flower_worker_online{")]
    assert any('worker="stays@' in line for line in online), online
    assert not any('worker="gone@' in line for line in online), online


def test_flower_keeps_an_offline_worker_a_day_unless_told_otherwise():
    # The Procfile's default, which docker-compose's flower command repeats
    assert "--purge_offline_workers=${FLOWER_PURGE_OFFLINE_WORKERS:-86400}" in procfile_command(
        "flower"
    )
