"""Reconciliation asks the live workers what they hold through the broker: one that refuses
the login is asked once, and said so in words once; one briefly away is still waited for.

kombu tries a connection again for broker_connection_timeout (4 s, 2 s apart) before the
broadcast: a broker refusing the login was tried three times, ~6 s of each reconciliation
pass, for a user name and password that do not change between tries (words3 hunt). A broker
briefly away (a restart) keeps those tries. Real Redis servers: one whose ACL user's password
is changed, one started a moment after the question.
"""

from __future__ import annotations

import logging
import threading

import pytest
import redis

from project.devservices import free_port
from schedules import broker
from tests.reliability import RedisServer, redis_server

LOGIN_REFUSED = (
    "the user name or password in its URL is wrong or missing, or that user is disabled in its ACL"
)


def connections_received(admin: redis.Redis) -> int:
    return admin.info("stats")["total_connections_received"]


@pytest.mark.parametrize("login", ["imp:right@", ":wrong@", ""])
def test_a_broker_refusing_the_login_is_tried_once_and_said_once(
    login, tmp_path, monkeypatch, caplog
):
    # Given a broker whose ACL user `imp` had its password changed, or that asks a password
    # the URL gets wrong or does not give
    with redis_server(free_port(), tmp_path) as server:
        admin = redis.Redis.from_url(server.url)
        admin.acl_setuser("imp", enabled=True, passwords=["+right"], keys="*", commands=["+@all"])
        admin.acl_setuser("imp", reset_passwords=True, passwords=["+changed"])
        admin.config_set("requirepass", "admin")
        admin = redis.Redis.from_url(f"redis://:admin@127.0.0.1:{server.port}/0")
        monkeypatch.setenv("CELERY_BROKER_URL", f"redis://{login}127.0.0.1:{server.port}/0")
        before = connections_received(admin)

        # When the reconciliation asks the live workers what they hold
        with caplog.at_level(logging.DEBUG, logger="importbeat.reconcile"):
            held = broker.held_by_live_workers(0.2)

        # Then it cannot tell, tried the login once, and says why once, in words
        tries = connections_received(admin) - before
    assert held is None
    assert tries == 1
    said = [r.getMessage() for r in caplog.records if r.name == "importbeat.reconcile"]
    assert said == [
        f"cannot ask the workers what they hold: the broker at 127.0.0.1:{server.port} "
        f"refuses the login: {LOGIN_REFUSED}"
    ]


def test_a_broker_briefly_away_is_waited_for(tmp_path, monkeypatch, caplog):
    # Given a broker that is away when the workers are asked, and back a second later
    server = RedisServer(free_port(), tmp_path)
    monkeypatch.setenv("CELERY_BROKER_URL", server.url)
    back = threading.Timer(1.0, server.start)
    back.start()
    try:
        # When the reconciliation asks the live workers what they hold
        with caplog.at_level(logging.WARNING, logger="importbeat.reconcile"):
            held = broker.held_by_live_workers(0.2)
    finally:
        back.join()
        server.kill()

    # Then it waited for the broker: no worker answered, and nothing is said
    assert held == set()
    assert not [r for r in caplog.records if r.name == "importbeat.reconcile"]
