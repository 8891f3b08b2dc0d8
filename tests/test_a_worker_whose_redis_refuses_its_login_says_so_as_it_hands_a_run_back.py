"""A worker whose Redis of run locks (REDIS_URL) starts refusing its login while it runs (its
ACL user's password changed) hands each run it takes back to the queue, and says why in words:
the Redis refuses the login, not that it is unreachable.

It logged "run 1 goes back to the queue: invalid username-password pair or user is disabled."
(redis-py's text), and the message's reason said importbeat's Redis "is unreachable", sending
an operator to look for an outage (left5 hunt). The run's owner meanwhile reads it queued,
nothing more: no library text, no credential. A real Redis with an ACL user.
"""

from __future__ import annotations

import logging
import re

import pytest
from celery.exceptions import Reject

from common import redis_client
from schedules.models import ImportRun
from tasks import runner
from tests.bound_task import BoundTask
from tests.factories import make_import
from tests.reliability import redis_url_as_imp

pytestmark = pytest.mark.django_db

LOGIN_REFUSED = (
    "the user name or password in its URL is wrong or missing, or that user is disabled in its ACL"
)
LIBRARY_TEXT = re.compile(r"Error|WRONGPASS|NOAUTH|username-password pair|Authentication")


@pytest.fixture
def locks_redis(tmp_path, settings):
    """REDIS_URL on a Redis of its own, logged in as the ACL user `imp` (password `right`)."""
    with redis_url_as_imp(tmp_path, settings) as (server, admin):
        redis_client.client().ping()
        yield server, admin


def test_a_run_goes_back_saying_redis_refuses_the_login(locks_redis, alice, monkeypatch, caplog):
    server, admin = locks_redis
    monkeypatch.setattr(runner, "REQUEUE_PAUSE_SECONDS", 0)
    imp = make_import(alice, "http://127.0.0.1:9/p.csv")
    run = ImportRun.objects.create(scheduled_import=imp, trigger="manual")

    # Given a worker logged in to its Redis, whose password is changed meanwhile (its
    # connections ended, as a restart or an operator's CLIENT KILL ends them)
    admin.acl_setuser("imp", reset_passwords=True, passwords=["+changed"])
    admin.client_kill_filter(user="imp")

    # When the worker takes the run
    with (
        caplog.at_level(logging.WARNING, logger="importbeat.runs"),
        pytest.raises(Reject) as handed_back,
    ):
        runner.execute(run.pk, BoundTask())

    # Then the message goes back to the queue, its reason saying Redis refuses the login
    assert handed_back.value.requeue
    assert handed_back.value.reason == (
        "importbeat's Redis (REDIS_URL, the run locks) refuses the login: "
        f"{LOGIN_REFUSED}; the message goes back to the queue"
    )
    # And the worker's log says so in words, without the password of the URL
    said = [r.getMessage() for r in caplog.records if r.name == "importbeat.runs"]
    assert said == [
        f"run {run.pk} goes back to the queue: Redis at 127.0.0.1:{server.port} refuses the "
        f"login: {LOGIN_REFUSED}"
    ]
    # And its owner reads it queued, nothing more
    run.refresh_from_db()
    assert (run.status, run.attempts, run.error_message) == ("queued", 0, "")


def test_a_run_goes_back_saying_an_away_redis_is_unreachable(
    locks_redis, alice, monkeypatch, caplog
):
    server, _admin = locks_redis
    monkeypatch.setattr(runner, "REQUEUE_PAUSE_SECONDS", 0)
    imp = make_import(alice, "http://127.0.0.1:9/p.csv")
    run = ImportRun.objects.create(scheduled_import=imp, trigger="manual")

    # Given a worker whose Redis has stopped
    server.kill()

    # When the worker takes the run
    with (
        caplog.at_level(logging.WARNING, logger="importbeat.runs"),
        pytest.raises(Reject) as handed_back,
    ):
        runner.execute(run.pk, BoundTask())

    # Then it goes back as before, Redis unreachable, said in words
    assert handed_back.value.reason == runner.REDIS_UNREACHABLE
    said = [r.getMessage() for r in caplog.records if r.name == "importbeat.runs"]
    assert said == [
        f"run {run.pk} goes back to the queue: cannot reach Redis at 127.0.0.1:{server.port}: "
        "connection refused"
    ]
    assert not any(LIBRARY_TEXT.search(line) for line in said)
