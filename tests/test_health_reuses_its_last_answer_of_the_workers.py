"""`GET /api/v1/health` reuses its web process's answer of the workers for
HEALTH_WORKERS_MAX_AGE seconds (10 by default): asking waits the ping timeout twice, a second
here, and every load balancer's probe waited it, keeping a web worker from the users that long."""

import pytest
from celery import current_app
from django.conf import settings

from tests.api_support import client_for
from tests.conftest import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]


def test_probes_within_the_age_reuse_the_workers_answer(processes, settings, django_user_model):
    staff = client_for(django_user_model.objects.create_user("ops", is_staff=True))
    settings.HEALTH_WORKER_PING_TIMEOUT = 1.0
    worker = processes.start("worker", WORKER_NAME="probed")
    wait_for(
        lambda: current_app.control.ping(timeout=1), 45, what="the worker\n" + processes.logs()
    )

    pings = []
    ping = current_app.control.ping

    def counted(*args, **kwargs):
        pings.append(args)
        return ping(*args, **kwargs)

    current_app.control.ping = counted
    try:
        # Given health asked once, and the answer reusable for a minute
        settings.HEALTH_WORKERS_MAX_AGE = 60
        first = staff.get("/api/v1/health").json()

        # When load balancers probe again, and the worker stops meanwhile
        again = [staff.get("/api/v1/health").json() for _ in range(3)]
        processes.stop(worker)
        after_the_stop = staff.get("/api/v1/health").json()

        # Then the workers were pinged once, and every answer named the worker
        assert len(pings) == 1
        for body in [first, *again, after_the_stop]:
            assert body["checks"]["workers"]["workers"][0].startswith("probed@"), body

        # And once the answer is older than the age, the next probe asks and sees none
        settings.HEALTH_WORKERS_MAX_AGE = 0
        body = staff.get("/api/v1/health").json()
        assert len(pings) == 2
        assert body["status"] == "degraded" and body["checks"]["workers"]["count"] == 0
    finally:
        current_app.control.ping = ping


def test_the_default_age_is_ten_seconds():
    from project import settings as project_settings

    assert project_settings.HEALTH_WORKERS_MAX_AGE == 10.0
    assert settings.HEALTH_WORKERS_MAX_AGE == 0  # the suite's own (conftest)
