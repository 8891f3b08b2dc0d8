"""A Redis that refuses the login is said to refuse the login by the throttles and by the
messages sent after a commit, not to refuse writes or new messages.

error_words.refusal() reads a login refusal as a refusal too, so the throttles said "manual_run
not counted, Redis did not take it: it refuses writes: the user name or password …", and a
notification's message "not sent: the broker refuses new messages: the user name or password …":
true, loosely, and it sent an operator to Redis's memory, where every other process says "refuses
the login" (review B, words3 hunt). Real Redis servers asking a password, and a full one.
"""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest
import redis
from django.test import override_settings

from project.devservices import free_port
from schedules import after_commit
from schedules.api import throttles
from tests.reliability import redis_server

LOGIN_REFUSED = (
    "the user name or password in its URL is wrong or missing, or that user is disabled in its ACL"
)
FULL = "Redis is full: it reached its maxmemory and evicts nothing; free memory or raise maxmemory"


@pytest.fixture
def guarded(tmp_path):
    """A Redis asking the password `right`, with an ACL user `imp` whose password is `right`."""
    with redis_server(free_port(), tmp_path) as server:
        admin = redis.Redis.from_url(server.url)
        admin.acl_setuser("imp", enabled=True, passwords=["+right"], keys="*", commands=["+@all"])
        admin.config_set("requirepass", "right")
        yield server


def throttled_on(url: str, caplog) -> str:
    caches = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
        "throttle": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": url},
    }
    request = SimpleNamespace(user=SimpleNamespace(pk=1))
    with override_settings(CACHES=caches), caplog.at_level(logging.WARNING):
        assert throttles.ManualRunThrottle().allow_request(request, None) is True
    (said,) = [r.getMessage() for r in caplog.records if "not counted" in r.getMessage()]
    return said


@pytest.mark.parametrize("login", [":wrong@", "imp:wrong@"])
def test_a_throttle_says_redis_refuses_the_login(guarded, login, caplog):
    # Given the throttles' counts on a Redis refusing the password given (or the ACL user's)
    url = f"redis://{login}127.0.0.1:{guarded.port}/0"

    # When a manual run is throttled
    said = throttled_on(url, caplog)

    # Then the request goes on, and the log says Redis refuses the login, where it is
    assert said == (
        f"manual_run not counted: Redis at 127.0.0.1:{guarded.port} refuses the login: "
        f"{LOGIN_REFUSED}"
    )
    assert "wrong" not in said.replace(LOGIN_REFUSED, "")


def test_a_throttle_on_a_full_redis_still_says_it_refuses_writes(tmp_path, caplog):
    # Given the throttles' counts on a full Redis that evicts nothing
    with redis_server(free_port(), tmp_path) as server:
        admin = redis.Redis.from_url(server.url)
        admin.config_set("maxmemory-policy", "noeviction")
        admin.config_set("maxmemory", 1)

        # When a manual run is throttled
        said = throttled_on(server.url, caplog)

    # Then the log says Redis refuses writes: it is full
    assert said == f"manual_run not counted, Redis did not take it: it refuses writes: {FULL}"


@pytest.mark.django_db
def test_a_message_after_commit_says_the_broker_refuses_the_login(
    guarded, caplog, django_capture_on_commit_callbacks
):
    # Given a message whose broker refuses the login of its ACL user
    def send() -> None:
        redis.Redis.from_url(f"redis://imp:wrong@127.0.0.1:{guarded.port}/0").lpush("celery", "x")

    marked = []

    # When it is sent once the caller's transaction commits
    with (
        caplog.at_level(logging.WARNING, logger="importbeat.broker"),
        django_capture_on_commit_callbacks(execute=True),
    ):
        after_commit.send_after_commit(
            send,
            "the notification's message",
            "the sweep sends it",
            refused=lambda: marked.append(1),
        )

    # Then the log says the broker refuses the login, and the rows are marked for the sweep
    said = [r.getMessage() for r in caplog.records if r.name == "importbeat.broker"]
    assert said == [
        f"the notification's message not sent: the broker refuses the login: {LOGIN_REFUSED}; "
        "the sweep sends it"
    ]
    assert marked == [1]
