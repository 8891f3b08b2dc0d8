"""Throttles whose rates are read from settings on every request (so tests and operators can
change them), counting in the shared Redis cache so that all web processes share one budget."""

from __future__ import annotations

from django.conf import settings
from django.core.cache import caches
from rest_framework.throttling import SimpleRateThrottle

from common.security import client_ip


class _SettingsRateThrottle(SimpleRateThrottle):
    setting = ""

    def __init__(self) -> None:
        self.cache = caches["throttle"]
        super().__init__()

    def get_rate(self) -> str:
        return getattr(settings, self.setting)


class ManualRunThrottle(_SettingsRateThrottle):
    """Manual triggers per user: a run is real work on the cluster."""

    scope = "manual_run"
    setting = "API_MANUAL_RUN_RATE"

    def get_cache_key(self, request, view) -> str:
        return self.cache_format % {"scope": self.scope, "ident": request.user.pk}


class LoginThrottle(_SettingsRateThrottle):
    """Password attempts per client address: slows down guessing.

    The address is the peer's, or what a proxy of TRUSTED_PROXIES reported: DRF's own
    `get_ident` believes any X-Forwarded-For, so a guesser could name a new address each time.
    """

    scope = "login"
    setting = "API_LOGIN_RATE"

    def get_cache_key(self, request, view) -> str:
        return self.cache_format % {"scope": self.scope, "ident": client_ip(request)}
