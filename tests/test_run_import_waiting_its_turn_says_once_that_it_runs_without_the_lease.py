"""`manage.py run_import` of an `overlap: queue` import, on a Redis that refuses its login,
waiting its turn behind a run in progress, says it runs without its import's lease once, as its
run starts; skipped after its timeout, it never says so (it never ran).

Regression (reviewD, fold5 hunt): the command looks at the run again at each poll while it
waits, and each look logged "run=N runs without its import's lease (Redis refuses the login:
…)": seven times in 6 s of a run that was then skipped (a real run_import process), where the
README says it says so once. In process, on a real Redis asking a password.
"""

from __future__ import annotations

import io
import logging
import threading
import time

import pytest
import redis
from django.core.management import CommandError, call_command
from django.db import connection

from project.devservices import free_port
from schedules.models import ImportRun
from tests.api_support import make_run
from tests.factories import PRODUCTS_CSV, make_import
from tests.reliability import redis_server
from tests.test_run_import_on_a_redis_that_refuses_the_login_runs_alone_and_says_so import on_redis

# Committed: the run in progress ends from another thread, as its worker would.
pytestmark = pytest.mark.django_db(transaction=True)

WITHOUT_THE_LEASE = "runs without its import's lease"


@pytest.fixture
def refusing_redis(settings, tmp_path):
    """REDIS_URL on a Redis of its own whose password is not the URL's; polls every second."""
    settings.RUN_LEASE_SECONDS = 3
    with redis_server(free_port(), tmp_path) as server:
        redis.Redis.from_url(server.url).config_set("requirepass", "right")
        with on_redis(settings, f"redis://:wrong@127.0.0.1:{server.port}/0"):
            yield


def ended_after(seconds: float, busy: ImportRun) -> threading.Thread:
    def end() -> None:
        time.sleep(seconds)
        ImportRun.objects.filter(pk=busy.pk).update(status="succeeded")
        connection.close()

    thread = threading.Thread(target=end)
    thread.start()
    return thread


def lease_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if WITHOUT_THE_LEASE in r.getMessage()]


def test_it_says_once_as_it_runs_after_its_wait(refusing_redis, alice, csv_server, caplog):
    # Given an overlap: queue import whose run in progress ends in 2.5 seconds
    imp = make_import(alice, csv_server.serve("/p.csv", PRODUCTS_CSV), overlap="queue")
    busy = make_run(imp, "running", attempts=1)
    ender = ended_after(2.5, busy)

    # When the operator runs it in the foreground, on a Redis that refuses the login
    with caplog.at_level(logging.INFO, logger="importbeat.runs"):
        call_command("run_import", imp.pk, stdout=io.StringIO(), stderr=io.StringIO())
    ender.join()

    # Then it waited, ran, and said once, as it started, that it ran without the lease
    run = ImportRun.objects.exclude(pk=busy.pk).get(scheduled_import=imp)
    assert (run.status, run.rows_inserted) == ("succeeded", 3)
    said = [r.getMessage() for r in caplog.records if r.name == "importbeat.runs"]
    waits = [i for i, line in enumerate(said) if line.startswith("run not started")]
    leases = [i for i, line in enumerate(said) if WITHOUT_THE_LEASE in line]
    assert len(waits) == 1, said  # (said once while it waits: words5 hunt)
    assert len(leases) == 1 and leases[0] > waits[-1], said
    assert said[leases[0]] == (
        f"run={run.pk} runs without its import's lease (Redis refuses the login: the user name "
        "or password in its URL is wrong or missing, or that user is disabled in its ACL); the "
        "database keeps it the only run of its import in progress"
    )


def test_it_says_nothing_of_the_lease_when_skipped_after_its_timeout(
    refusing_redis, alice, csv_server, caplog
):
    # Given an overlap: queue import with a 2-second timeout, whose run in progress goes on
    imp = make_import(
        alice, csv_server.serve("/p.csv", PRODUCTS_CSV), overlap="queue", timeout_seconds=2
    )
    busy = make_run(imp, "running", attempts=1)

    # When the operator runs it in the foreground, on a Redis that refuses the login
    with (
        caplog.at_level(logging.INFO, logger="importbeat.runs"),
        pytest.raises(CommandError) as raised,
    ):
        call_command("run_import", imp.pk, stdout=io.StringIO(), stderr=io.StringIO())

    # Then it is skipped, and never said it ran without the lease: it never ran
    assert "longer than its 2s timeout" in str(raised.value)
    assert ImportRun.objects.exclude(pk=busy.pk).get(scheduled_import=imp).status == "skipped"
    assert lease_lines(caplog) == []
