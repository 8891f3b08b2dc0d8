"""`/api/v1/health` answers whatever the request's Host header says.

Compose's `web` healthcheck asks `http://127.0.0.1:8000/api/v1/health`, and a load balancer
probes its targets by address (an AWS target group, for one). With `DJANGO_ALLOWED_HOSTS` set to
the public name, as README "Production" sets it, Django refused both with an HTML 400
(DisallowedHost): the web container stayed unhealthy for ever, and a load balancer took every
web target out of service. Every other path keeps Django's host check.

For the health path alone, the request's host is a constant, never the header: nothing the
answer says (or a redirect would say) comes from what the caller sent, and the header is
neither validated nor read.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

# The health path, with and without its trailing slash (schedules/api/urls.py; the same paths
# DJANGO_SSL_REDIRECT leaves alone, SECURE_REDIRECT_EXEMPT).
HEALTH_PATH = re.compile(r"^/api/v1/health/?$")
# What `request.get_host()` gives on the health path.
HEALTH_HOST = "localhost"


def _health_host() -> str:
    return HEALTH_HOST


class HealthAnswersAnyHostMiddleware:
    """First of the middleware: before anything that calls `request.get_host()` (the security
    middleware's redirect, CommonMiddleware, CSRF)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if HEALTH_PATH.match(request.path_info):
            request.get_host = _health_host
        return self.get_response(request)
