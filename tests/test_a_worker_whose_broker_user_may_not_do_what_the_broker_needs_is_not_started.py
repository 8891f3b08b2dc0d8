"""A worker whose broker user's Redis ACL refuses what the broker needs (BRPOP, or the queue's
keys) is not started, and says which command or key, in words; a user kept to kombu's own keys
(its queues, bindings, unacknowledged messages and the workers' own queues) starts and works.

Before, the start-up probe let such a user pass (its write of a key of its own tolerates an
ACL's refusal, for the user kept to kombu's keys): the worker said ready, met the refusal at its
first wait for a message ("consumer: Connection to broker lost … auth:NoPermissionError"),
restarted its consumer at once, again and again, some ten lines a second ("Connected to …"),
and took nothing; the queued message stayed queued for as long as it ran (the tls2 hunt). The
probe now has Redis check the broker's commands against the ACL inside MULTI, then DISCARDs
them: nothing is run.
"""

from __future__ import annotations

import pytest
import redis

from project.devservices import free_port
from tests.conftest import wait_for
from tests.reliability import FAST, redis_server
from tests.test_worker_not_started_without_its_database_or_broker import refusal

pytestmark = [pytest.mark.processes, pytest.mark.django_db(transaction=True)]

ACL = "check its ACL"


def worker_with_broker_user(processes, server, **acl):
    """The Procfile's worker whose broker user `bob` has the ACL `acl`; its REDIS_URL and
    results are the server's default user's."""
    redis.Redis.from_url(server.url).acl_setuser(
        "bob", enabled=True, passwords=["+bob-broker-pw"], **acl
    )
    broker_url = f"redis://bob:bob-broker-pw@127.0.0.1:{server.port}/0"
    return processes.start(
        "worker", **FAST, REDIS_URL=server.url, CELERY_BROKER_URL=broker_url,
        CELERY_RESULT_BACKEND=server.url,
    )  # fmt: skip


@pytest.mark.parametrize(
    "acl, named",
    [
        pytest.param({"commands": ["-brpop"], "keys": ["*"]}, "the command BRPOP",
                     id="a user that may run everything but BRPOP"),
        pytest.param({"keys": ["importbeat:*", "_kombu*", "unacked*"]}, "the key celery for BRPOP",
                     id="a user whose keys leave out the queue's"),
    ],
)  # fmt: skip
def test_a_broker_user_refused_what_the_broker_needs_stops_the_workers_start_naming_it(
    processes, tmp_path, acl, named
):
    with redis_server(free_port(), tmp_path) as server:
        # Given a broker user refused a command or a key the broker needs (the case's id)
        worker = worker_with_broker_user(processes, server, categories=["+@all"], **acl)

        # When the worker starts, Then it refuses to, naming the command or the key
        assert refusal(processes, worker) == (
            f"importbeat worker not started: the broker at 127.0.0.1:{server.port} does not let "
            f"its Redis user use {named}, which the broker needs: {ACL}"
        )


def test_a_broker_user_kept_to_kombus_keys_starts_a_worker_that_takes_alices_message(
    processes, tmp_path
):
    from celery import current_app
    from kombu import Connection

    with redis_server(free_port(), tmp_path) as server:
        # Given a broker user kept to kombu's keys: the queues, their bindings, the messages
        # not yet acknowledged, and the workers' own queues (`<name>.celery.pidbox`)
        worker = worker_with_broker_user(
            processes, server, categories=["+@all"],
            keys=["celery*", "_kombu*", "unacked*", "*.pidbox*"],
        )  # fmt: skip

        # When the worker starts and a message is sent to its queue
        wait_for(lambda: " ready." in processes.log_of("worker"), 60, what=processes.logs())
        with Connection(server.url) as connection:
            current_app.send_task("importbeat.noop", connection=connection)

        # Then it takes it, and its consumer never lost its broker
        wait_for(lambda: "importbeat.noop" in processes.log_of("worker")
                 and redis.Redis.from_url(server.url).llen("celery") == 0, 30,
                 what=processes.logs())  # fmt: skip
        assert worker.poll() is None
        assert "Connection to broker lost" not in processes.log_of("worker")
