"""A worker whose broker user's Redis ACL refuses MULTI is not started, naming it, and its
start-up probe takes no message and writes nothing.

Before, the probe sent MULTI, the broker's commands and DISCARD in one go: Redis refused MULTI,
then ran each command at once. The worker's start (and every /api/v1/health) popped a message
of the queue with BRPOP, lost for good, pushed the probe's value into the queue, and added it to
the queue's binding, where kombu's routing then failed every message sent, the ACL mended or not
(review2 hunt).
"""

from __future__ import annotations

import pytest
import redis

from project.devservices import free_port
from tests.reliability import redis_server
from tests.test_a_worker_whose_broker_user_may_not_do_what_the_broker_needs_is_not_started import (
    ACL,
    worker_with_broker_user,
)
from tests.test_worker_not_started_without_its_database_or_broker import refusal

pytestmark = [pytest.mark.processes, pytest.mark.django_db(transaction=True)]

ALICES_MESSAGE = b'{"alice": "her run"}'


def test_a_broker_user_refused_multi_is_not_started_and_takes_no_message(processes, tmp_path):
    with redis_server(free_port(), tmp_path) as server:
        # Given alice's message waiting in the queue, and a broker user that may run
        # everything but MULTI
        admin = redis.Redis.from_url(server.url)
        admin.lpush("celery", ALICES_MESSAGE)

        # When the worker starts
        worker = worker_with_broker_user(
            processes, server, categories=["+@all"], commands=["-multi"], keys=["*"],
            channels=["*"],
        )  # fmt: skip

        # Then it refuses to start
        line = refusal(processes, worker)
        # And alice's message is still there, alone, and the queue's binding has nothing new
        assert admin.lrange("celery", 0, -1) == [ALICES_MESSAGE]
        assert admin.smembers("_kombu.binding.celery") == set()
        # And it names MULTI
        assert line == (
            f"importbeat worker not started: the broker at 127.0.0.1:{server.port} does not let "
            f"its Redis user use the command MULTI, which the broker needs: {ACL}"
        )
