"""A Redis that asks a password, met by a client that gave none, is said to refuse the login,
whichever way the client greets it.

redis-py 8 greets a server with `HELLO 3` (RESP3). A Redis with `requirepass` answers a client
that gave no password "NOAUTH HELLO must be called with the client already authenticated, …",
and redis-py keeps only the text after NOAUTH. The words for a login refusal knew "Authentication
required." alone (what a client answers after a PING first, as importbeat's own clients do with
their health check), so a client without one, the throttles' cache (Django's RedisCache), said
"Redis did not take it: AuthenticationError: HELLO must be called with the client already
authenticated, otherwise the HELLO AUTH <user> <pass> option can be used …", redis-py's class
and text, and error_words said "the reason is in the log" of it (review of the health3 hunt).
A real Redis asking a password.
"""

from __future__ import annotations

import logging
import re
from types import SimpleNamespace

import pytest
import redis
from django.test import override_settings

from common import error_words
from project.devservices import free_port
from schedules.api import throttles
from tests.reliability import redis_server

LOGIN_REFUSED = (
    "the user name or password in its URL is wrong or missing, or that user is disabled in its ACL"
)
# redis-py's and Redis's own words, which no reader is shown.
LIBRARY_TEXT = re.compile(r"AuthenticationError|HELLO|NOAUTH|authenticated")


@pytest.fixture
def guarded(tmp_path):
    """The URL, without a password, of a Redis that asks one."""
    with redis_server(free_port(), tmp_path) as server:
        redis.Redis.from_url(server.url).config_set("requirepass", "right")
        yield server.url


def test_a_resp3_greeting_refused_for_want_of_a_password_is_a_login_refusal(guarded):
    # Given a client that greets with HELLO 3 and gives no password
    with pytest.raises(redis.RedisError) as refused:
        redis.Redis.from_url(guarded).ping()

    # When its error is said in words
    words = error_words.login_refusal("Redis at here", refused.value)

    # Then it is a login refusal, and the reason says why
    assert words == f"Redis at here refuses the login: {LOGIN_REFUSED}"
    assert error_words.reason(refused.value) != error_words.UNKNOWN


def test_a_throttle_on_a_redis_asking_a_password_says_it_refuses_the_login(guarded, caplog):
    # Given the throttles' counts kept on a Redis that asks a password none is given
    caches = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
        "throttle": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": guarded},
    }
    request = SimpleNamespace(user=SimpleNamespace(pk=1))
    caplog.set_level(logging.INFO)

    # When a manual run is throttled
    with override_settings(CACHES=caches):
        allowed = throttles.ManualRunThrottle().allow_request(request, None)

    # Then it goes on, and the log says Redis refuses the login, in words
    assert allowed is True
    (said,) = [r.getMessage() for r in caplog.records if "not counted" in r.getMessage()]
    assert LOGIN_REFUSED in said, said
    assert not LIBRARY_TEXT.search(said), said
