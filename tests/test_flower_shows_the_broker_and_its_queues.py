"""Flower shows the broker and the length of its queues: how an operator sees runs waiting for
a worker. Flower knows a broker by its URL's scheme; while importbeat named its Redis transport
by a class path (CELERY_BROKER_TRANSPORT), Flower's broker page listed no queue and its
`/api/queues/length` answered 404 "broker is not supported". The transport is now kombu's
`redis` itself (project/celery.py)."""

import pytest
import requests

from schedules import services
from tests.factories import PRODUCTS_CSV, make_import
from tests.reliability import start_flower

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]

AUTH = ("ops", "s3cret-flower")


def test_flower_counts_the_runs_waiting_for_a_worker(alice, csv_server, processes):
    # Given Flower, and no worker
    base = start_flower(processes, AUTH)
    before = waiting(base)

    # When a run is queued
    imp = make_import(alice, csv_server.serve("/p.csv", PRODUCTS_CSV))
    services.enqueue_run(imp, trigger="api", user=alice)

    # Then Flower counts its message on the queue
    assert waiting(base) == before + 1
    # ... and its broker page names the broker as configured, password hidden
    page = requests.get(f"{base}/broker", auth=AUTH, timeout=10)
    assert page.status_code == 200
    assert "redis://" in page.text and "broker_transport" not in page.text


def waiting(base: str) -> int:
    answer = requests.get(f"{base}/api/queues/length", auth=AUTH, timeout=10)
    assert answer.status_code == 200, answer.text
    queues = {queue["name"]: queue["messages"] for queue in answer.json()["active_queues"]}
    return queues["celery"]
