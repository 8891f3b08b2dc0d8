"""A worker's watch of beat (project.beat_watch) that cannot read beat's last tick in Redis says
why in words: the Redis refuses the login, or cannot be reached, at host:port.

It logged redis-py's text in the worker's main process, once a look: "beat's last tick not
looked at: invalid username-password pair or user is disabled." for a password changed while
the worker ran, "Error 111 connecting to 127.0.0.1:…. Connection refused." for a Redis away
(refuse6 hunt, words4 hunt). A real Redis with an ACL user.
"""

from __future__ import annotations

import logging
import re
import time

import pytest
from celery import Celery

from common import redis_client
from common.redis_client import LAST_TICK_KEY
from project import beat_watch
from project.devservices import free_port
from tests.reliability import redis_server, redis_url_as_imp

LOGIN_REFUSED = (
    "the user name or password in its URL is wrong or missing, or that user is disabled in its ACL"
)
LIBRARY_TEXT = re.compile(r"Error|WRONGPASS|NOAUTH|username-password pair|Authentication")


class OneLook:
    """The watch's stop event, unset for one look, then set."""

    def __init__(self) -> None:
        self.looks = 0

    def wait(self, _seconds: float) -> bool:
        self.looks += 1
        return self.looks > 1


@pytest.fixture
def watched_redis(tmp_path, settings, monkeypatch):
    """REDIS_URL on a Redis of its own, as the ACL user `imp` (password `right`)."""
    with redis_url_as_imp(tmp_path, settings) as (server, admin):
        redis_client.client().ping()
        yield server, admin


def one_look(monkeypatch, caplog) -> list[str]:
    """The lines of one look of the watch, as its thread makes it."""
    monkeypatch.setattr(beat_watch, "_stopped", OneLook())
    with caplog.at_level(logging.WARNING, logger="importbeat.reconcile"):
        beat_watch._watch("worker@test")
    return [r.getMessage() for r in caplog.records if r.name == "importbeat.reconcile"]


def test_a_redis_refusing_the_login_is_said_so(watched_redis, monkeypatch, caplog):
    server, admin = watched_redis
    # Given a worker whose Redis's password is changed while it runs
    admin.acl_setuser("imp", reset_passwords=True, passwords=["+changed"])
    admin.client_kill_filter(user="imp")

    # When its watch looks at beat's last tick
    said = one_look(monkeypatch, caplog)

    # Then it says the Redis refuses the login, in words
    assert said == [
        f"beat's last tick not looked at: Redis at 127.0.0.1:{server.port} refuses the login: "
        f"{LOGIN_REFUSED}"
    ]


def test_a_redis_away_is_said_unreachable(watched_redis, monkeypatch, caplog):
    server, _admin = watched_redis
    # Given a worker whose Redis has stopped
    server.kill()

    # When its watch looks at beat's last tick
    said = one_look(monkeypatch, caplog)

    # Then it says it cannot reach it, without the library's text
    assert said == [
        f"beat's last tick not looked at: cannot reach Redis at 127.0.0.1:{server.port}: "
        "connection refused"
    ]
    assert not any(LIBRARY_TEXT.search(line) for line in said)


def test_a_broker_away_as_the_owners_are_to_be_told_is_said_unreachable(
    watched_redis, tmp_path, settings, monkeypatch, caplog
):
    _server, admin = watched_redis
    # Given beat gone for an hour, and the worker's broker (a Redis of its own) stopped
    admin.set(LAST_TICK_KEY, f"{time.time() - 3600:.3f} 0.000")
    with redis_server(free_port(), tmp_path) as broker:
        settings.CELERY_BROKER_URL = broker.url
        # (Celery takes the environment's CELERY_BROKER_URL before the one it is given)
        monkeypatch.delenv("CELERY_BROKER_URL", raising=False)
        # (not made the current app: the runner's later tests sent their tasks to this gone
        # broker, and read results from a disabled backend: 54 failed in one CI run)
        app = Celery(broker=broker.url, set_as_current=False)
    monkeypatch.setattr(beat_watch, "current_app", app)

    # When its watch looks at beat's last tick, and sends the overdue imports' task
    said = one_look(monkeypatch, caplog)

    # Then it says the owners are not told this time, and why, in words
    assert said[-1] == (
        "the owners of overdue imports are not told at this look (the next tries again): "
        f"cannot reach the broker at 127.0.0.1:{broker.port}: connection refused"
    )
    assert not any(LIBRARY_TEXT.search(line) for line in said)
