"""Health hears the workers at every ask: it asked them on the broker connection pool's
connection, where kombu's Redis transport (vanilla too) lost their replies one ask in two or
more, and health then said "no worker answers" (degraded, and the dashboard red) while they
ran, or missed a worker that cannot reach its database. Each question now has a connection of
its own."""

import pytest

from schedules.api import health
from tests.conftest import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]


def test_every_ask_hears_the_running_worker(processes):
    # Given a worker that runs
    processes.start("worker")
    wait_for(lambda: "ready." in processes.log_of("worker"), 30, what=processes.logs())
    # and has answered once: a worker just "ready." may not listen to the broadcast yet (its
    # first ask went unanswered in a CI run, the machine loaded)
    wait_for(lambda: health.check_workers()["ok"], 30, what=processes.logs())

    # When health asks the workers ten times in a row
    asks = [health.check_workers() for _ in range(10)]

    # Then it hears the worker each time
    assert [(ask["ok"], ask["count"]) for ask in asks] == [(True, 1)] * 10
