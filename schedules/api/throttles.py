"""Throttles whose rates are read from settings on every request (so tests and operators can
change them), counting in the shared Redis cache so that all web processes share one budget."""

from __future__ import annotations

import logging
from weakref import WeakKeyDictionary

from django.conf import settings
from django.core.cache import BaseCache, caches
from redis.commands.core import Script
from redis.exceptions import RedisError
from rest_framework.throttling import SimpleRateThrottle

from common import error_words
from common.security import client_ip

logger = logging.getLogger(__name__)

# DRF's SimpleRateThrottle in one round trip: its history of a key (request times, newest
# first) with the times out of the window dropped from the oldest end; refused when `limit`
# remain (the history returned, for Retry-After), else the time added and the key kept for the
# window. DRF reads the history and writes it back in two round trips, each through a redis-py
# client Django's cache backend builds per call (0.13 ms each), and two requests between its
# read and its write could both pass; a script runs whole. The history is a Redis list of
# times where DRF pickled a Python list: a value left in that form is dropped (a window's
# history lost once, on upgrade).
SLIDING_WINDOW = """
local key, now, window, limit = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local kind = redis.call('TYPE', key).ok
if kind ~= 'list' and kind ~= 'none' then redis.call('DEL', key) end
while true do
    local oldest = redis.call('LINDEX', key, -1)
    if not oldest or tonumber(oldest) > now - window then break end
    redis.call('RPOP', key)
end
if redis.call('LLEN', key) >= limit then return redis.call('LRANGE', key, 0, -1) end
redis.call('LPUSH', key, ARGV[1])
redis.call('EXPIRE', key, window)
return false
"""

# One client and script per throttle cache (a cache is per thread), through the cache's own
# connection pool, so the counts stay where CACHES["throttle"] says and `cache.delete` forgets
# them.
_scripts: WeakKeyDictionary[BaseCache, Script] = WeakKeyDictionary()


def _sliding_window(cache: BaseCache) -> Script:
    script = _scripts.get(cache)
    if script is None:
        script = _scripts[cache] = cache._cache.get_client(write=True).register_script(
            SLIDING_WINDOW
        )
    return script


class _SettingsRateThrottle(SimpleRateThrottle):
    setting = ""

    def __init__(self) -> None:
        self.cache = caches["throttle"]
        super().__init__()

    def get_rate(self) -> str:
        return getattr(settings, self.setting)

    def allow_request(self, request, view) -> bool:
        """SimpleRateThrottle.allow_request, its read and write one script (SLIDING_WINDOW)."""
        if self.rate is None:
            return True
        self.key = self.get_cache_key(request, view)
        if self.key is None:
            return True
        self.now = self.timer()
        try:
            refused = _sliding_window(self.cache)(
                keys=[self.cache.make_and_validate_key(self.key)],
                args=[repr(self.now), self.duration, self.num_requests],
            )
        except RedisError as error:
            # A Redis that is down, full or a read-only replica cannot count: the request goes
            # on (it was a 500) and meets what it needs, which answers in words (the broker's
            # 503 for a trigger); logins keep their lockout in the database (django-axes).
            # In words: the raw error quoted the script's text and Redis's -OOM reply.
            if words := error_words.login_refusal(self._place(), error):
                # Said as what it is: "Redis did not take it: it refuses writes: the user name
                # or password …" sent an operator to its memory (review B).
                logger.warning("%s not counted: %s", self.scope, words)
            else:
                logger.warning("%s not counted, Redis did not take it: %s", self.scope, _why(error))
            return True
        if refused is None:
            return True
        self.history = [float(moment) for moment in refused]
        return self.throttle_failure()

    def _place(self) -> str:
        """`Redis at host:port` of the throttles' cache (CACHES["throttle"]), no password."""
        servers = getattr(self.cache, "_servers", None) or [""]
        return error_words.broker_place(servers[0], "Redis")


def _why(error: RedisError) -> str:
    """Why Redis did not count a request, in words (error_words); its own text where no words
    say it."""
    refused = error_words.refusal(error)
    if refused is not None:
        return f"it refuses writes: {refused}"
    why = error_words.reason(error)
    if why == error_words.UNKNOWN:
        return f"{type(error).__name__}: {error_words.log_text(error)}"
    return f"cannot reach it: {why}"


class ManualRunThrottle(_SettingsRateThrottle):
    """Manual triggers per user: a run is real work on the cluster."""

    scope = "manual_run"
    setting = "API_MANUAL_RUN_RATE"

    def get_cache_key(self, request, view) -> str:
        return self.cache_format % {"scope": self.scope, "ident": request.user.pk}


class SourceCheckThrottle(ManualRunThrottle):
    """Checks of a source before a save (`POST /imports/check`, `?dry_run=`) per user, at the
    triggers' rate but in a budget of their own: one budget for both let an owner's checks
    while editing refuse their triggers (429), and the other way round."""

    scope = "source_check"


class LoginThrottle(_SettingsRateThrottle):
    """Password attempts per client address: slows down guessing.

    The address is the peer's, or what a proxy of TRUSTED_PROXIES reported: DRF's own
    `get_ident` believes any X-Forwarded-For, so a guesser could name a new address each time.
    """

    scope = "login"
    setting = "API_LOGIN_RATE"

    def get_cache_key(self, request, view) -> str:
        return self.cache_format % {"scope": self.scope, "ident": client_ip(request)}
