"""The reconciliation's readers of the broker (how many messages wait, which task ids wait or
are held, what the live workers hold) say a broker that refuses the login, or cannot be
reached, in words.

They logged redis-py's class or text: "queue depth unavailable: AuthenticationError",
"cannot read the broker's queues: invalid username-password pair or user is disabled.",
"cannot ask the workers what they hold: Authentication required.", and "Error 111 connecting to
127.0.0.1:… Connection refused." for a broker that is away (words3 hunt). Real Redis servers,
one asking a password with an ACL user, one stopped.
"""

from __future__ import annotations

import logging
import re

import pytest
import redis

from common.error_words import CLASS_NAME
from project.devservices import free_port
from schedules import broker
from tests.reliability import redis_server

LOGIN_REFUSED = (
    "the user name or password in its URL is wrong or missing, or that user is disabled in its ACL"
)
# redis-py's and Redis's own words, which no reader is shown.
LIBRARY_TEXT = re.compile(r"Error|WRONGPASS|NOAUTH|username-password pair|Authentication")


@pytest.fixture
def guarded(tmp_path):
    """A Redis asking the password `right`, with an ACL user `imp` that is switched off."""
    with redis_server(free_port(), tmp_path) as server:
        admin = redis.Redis.from_url(server.url)
        admin.acl_setuser("imp", enabled=False, passwords=["+right"], keys="*", commands=["+@all"])
        admin.config_set("requirepass", "right")
        yield server


def said_by_the_readers(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "importbeat.reconcile"]


@pytest.mark.parametrize("login", [":wrong@", "", "imp:right@"])
def test_a_broker_refusing_the_login_is_said_so(guarded, login, monkeypatch, caplog):
    # Given the broker's URL with a wrong password, none, or an ACL user that is off
    monkeypatch.setenv("CELERY_BROKER_URL", f"redis://{login}127.0.0.1:{guarded.port}/0")

    # When the reconciliation reads how many messages wait and which
    with caplog.at_level(logging.WARNING, logger="importbeat.reconcile"):
        depth = broker.queue_depth()
        pending = broker.pending_task_ids()

    # Then it cannot tell, and says the broker refuses the login, in words
    assert list(depth.values()) == [None] and pending is None
    refuses = f"the broker at 127.0.0.1:{guarded.port} refuses the login: {LOGIN_REFUSED}"
    assert said_by_the_readers(caplog) == [
        f"queue depth unavailable: {refuses}",
        f"cannot read the broker's queues: {refuses}",
    ]


def test_asking_the_workers_through_a_broker_refusing_the_login_says_so(
    guarded, monkeypatch, caplog
):
    # Given the broker's URL naming an ACL user that is off
    monkeypatch.setenv("CELERY_BROKER_URL", f"redis://imp:right@127.0.0.1:{guarded.port}/0")

    # When the reconciliation asks the live workers what they hold
    with caplog.at_level(logging.WARNING, logger="importbeat.reconcile"):
        held = broker.held_by_live_workers(0.2)

    # Then it cannot tell, and says the broker refuses the login, in words
    assert held is None
    (said,) = said_by_the_readers(caplog)
    assert said == (
        f"cannot ask the workers what they hold: the broker at 127.0.0.1:{guarded.port} "
        f"refuses the login: {LOGIN_REFUSED}"
    )


def test_a_broker_that_is_away_is_said_in_words(tmp_path, monkeypatch, caplog):
    # Given the broker's URL on a Redis that has stopped
    with redis_server(free_port(), tmp_path) as server:
        url = server.url
    monkeypatch.setenv("CELERY_BROKER_URL", url)

    # When the reconciliation reads how many messages wait and which
    with caplog.at_level(logging.WARNING, logger="importbeat.reconcile"):
        broker.queue_depth()
        broker.pending_task_ids()

    # Then each line says it cannot reach the broker, and why, without redis-py's words
    said = said_by_the_readers(caplog)
    port = url.rsplit(":", 1)[1].split("/")[0]
    assert said == [
        f"queue depth unavailable: cannot reach the broker at 127.0.0.1:{port}: connection refused",
        f"cannot read the broker's queues: cannot reach the broker at 127.0.0.1:{port}: "
        "connection refused",
    ]
    assert not any(CLASS_NAME.search(line) or LIBRARY_TEXT.search(line) for line in said)
