"""Beat's own jobs (the sweep, reconciliation) that a full broker refuses are one WARNING line
each, in words, and are sent again at their next interval.

Celery's scheduler logged each as "Message Error" with the stack and the chained traceback,
about 30 lines for each job at each interval while Redis was full (found by the broker hunt),
where everything else importbeat says of a full Redis is one line.
"""

from __future__ import annotations

import pytest
import redis

from project.devservices import free_port
from tests.conftest import wait_for
from tests.reliability import FAST, redis_server

pytestmark = [pytest.mark.processes, pytest.mark.django_db(transaction=True)]

FULL = (
    "the broker refuses new messages: Redis is full: it reached its maxmemory and evicts nothing;"
    " free memory or raise maxmemory"
)


def test_beats_jobs_refused_by_a_full_broker_are_one_line_each_and_sent_once_it_has_room(
    processes, tmp_path
):
    with redis_server(free_port(), tmp_path) as server:
        # Given beat on a broker of its own, which is full (it evicts nothing)
        broker = redis.Redis.from_url(server.url)
        broker.config_set("maxmemory-policy", "noeviction")
        broker.config_set("maxmemory", "1")
        processes.start("beat", **FAST, CELERY_BROKER_URL=server.url)

        # When its jobs come due (every 2 seconds here)
        said = f"beat's job importbeat:maintenance:sweep not sent: {FULL}"
        wait_for(lambda: said in processes.log_of("beat"), 30, what=processes.logs())

        # Then each refusal is that one line, with no traceback
        log = processes.log_of("beat")
        assert "Message Error" not in log and "Traceback" not in log, log
        assert "it is sent again at its next interval" in log

        # And once the broker has room, the jobs are sent again
        broker.config_set("maxmemory", "0")
        wait_for(lambda: broker.llen("celery") > 0, 30, what="a job sent\n" + processes.logs())
