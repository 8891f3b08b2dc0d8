"""`manage.py run_import` on a Redis that refuses its login (REDIS_URL with a wrong password)
runs without its import's lease, says so in words, and stays the only attempt of its run: the
sweep of a worker whose Redis answers does not take it for a lost worker's and send it again.

Regression: it logged "no lease (Redis unavailable) run=N: invalid username-password pair or
user is disabled." (redis-py's text), and, without the lease, wrote no heartbeat: a foreground
run longer than two lease periods was taken for lost by the sweep and sent to a worker, which
took the run over while it ran here, two attempts of one run at once (SPEC 4; health3 hunt).

In process, on a real Redis asking a password: the command as an operator runs it, the sweep
run meanwhile as a worker with the right REDIS_URL runs it.
"""

from __future__ import annotations

import logging
import time

import pytest
import redis
from django.core.management import call_command

from common import redis_client
from project.devservices import free_port
from schedules.models import ImportRun
from tasks import engine, maintenance, runner
from tests.factories import PRODUCTS_CSV, make_import
from tests.reliability import redis_server

pytestmark = pytest.mark.django_db(transaction=True)

LEASE_SECONDS = 1


def test_run_import_on_a_redis_that_refuses_the_login_runs_alone(
    alice, csv_server, settings, monkeypatch, tmp_path, caplog
):
    # Given an import, and a REDIS_URL whose password the Redis refuses
    imp = make_import(alice, csv_server.serve("/p.csv", PRODUCTS_CSV))
    settings.RUN_LEASE_SECONDS = LEASE_SECONDS
    good = settings.REDIS_URL
    swept: list[int] = []
    imported = engine.import_run

    def lasting_past_two_lease_periods(run, **kwargs):
        # The attempt lasts while a worker's sweep passes, its Redis answering
        time.sleep(2 * LEASE_SECONDS + 0.5)
        with on_redis(settings, good):
            swept.append(maintenance.sweep_runs()["recovered"])
        return imported(run, **kwargs)

    monkeypatch.setattr(runner.engine, "import_run", lasting_past_two_lease_periods)

    with redis_server(free_port(), tmp_path) as server:
        redis.Redis.from_url(server.url).config_set("requirepass", "right")
        wrong = f"redis://:wrong@127.0.0.1:{server.port}/0"

        # When an operator runs it in the foreground
        with on_redis(settings, wrong), caplog.at_level(logging.WARNING, "importbeat.runs"):
            call_command("run_import", imp.pk, "--no-progress")

    # Then it ran alone, once, and the sweep left it to this process
    run = ImportRun.objects.get(scheduled_import=imp)
    assert (run.status, run.attempts) == ("succeeded", 1)
    assert swept == [0]
    # ... saying in words that it ran without the lease
    said = [r.getMessage() for r in caplog.records if "lease" in r.getMessage()]
    assert said == [
        f"run={run.pk} runs without its import's lease (Redis refuses the login: the user name "
        "or password in its URL is wrong or missing, or that user is disabled in its ACL); the "
        "database keeps it the only run of its import in progress"
    ], said


class on_redis:
    """REDIS_URL set to `url` meanwhile, the process's Redis client made again for it."""

    def __init__(self, settings, url: str) -> None:
        self.settings, self.url = settings, url

    def __enter__(self) -> None:
        self.before = self.settings.REDIS_URL
        self.settings.REDIS_URL = self.url
        redis_client.client.cache_clear()

    def __exit__(self, *exc) -> None:
        self.settings.REDIS_URL = self.before
        redis_client.client.cache_clear()
