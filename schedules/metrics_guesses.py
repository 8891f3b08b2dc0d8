"""Wrong passwords at `/metrics`, counted apart from logins.

`/metrics` takes Flower's credentials by basic auth, and nothing counted its failures: every
wrong guess got a 401, for ever (attack hunt). Counted as failed logins (django-axes), a
Prometheus left with an old password locked the account named as Flower's user, and every user
at the scraper's address, out of the admin and the API, renewed at every scrape (review).
So they are counted here, in Redis, per client address and per name given, each up to
LOGIN_FAILURE_LIMIT, forgotten LOGIN_LOCKOUT_SECONDS after the last: past it, `/metrics`
answers 429 to that address or name, the right password included; logins never read these
counts. Without Redis they are not counted (the scrape's figures from Redis are missing too).
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.http import HttpRequest
from redis.exceptions import RedisError

from common import error_words
from common.redis_client import client
from common.security import client_ip

logger = logging.getLogger(__name__)

PREFIX = "importbeat:metrics-guesses"


def _keys(request: HttpRequest, name: str) -> list[str]:
    return [f"{PREFIX}:address:{client_ip(request)}", f"{PREFIX}:name:{name}"]


def locked_out(request: HttpRequest, name: str) -> bool:
    """The address or the name has met the limit. Without Redis, nobody is (and it is said)."""
    try:
        counts = client().mget(_keys(request, name))
    except RedisError as error:
        logger.warning("guesses at /metrics not counted: %s", error_words.redis_for_the_log(error))
        return False
    return any(int(count or 0) >= settings.LOGIN_FAILURE_LIMIT for count in counts)


def guessed_wrong(request: HttpRequest, name: str) -> bool:
    """Count a wrong password; True when the address or the name has now met the limit."""
    try:
        with client().pipeline() as pipe:
            for key in _keys(request, name):
                # Each guess renews the window, as axes counts a login's cool-off from the last
                # failure: from the first, a lockout reached late in it lifted at once, while
                # its Retry-After said LOGIN_LOCKOUT_SECONDS (review).
                pipe.incr(key)
                pipe.expire(key, settings.LOGIN_LOCKOUT_SECONDS)
            counts = pipe.execute()[::2]
    except RedisError as error:
        logger.warning("guesses at /metrics not counted: %s", error_words.redis_for_the_log(error))
        return False
    return any(count >= settings.LOGIN_FAILURE_LIMIT for count in counts)
