"""Flower's configuration file, read by `celery flower` (Procfile `flower`) from the working
directory before it starts.

Flower reads FLOWER_BASIC_AUTH (`user:password`) from the environment by itself. Outside
development it is required: Flower lists task arguments and can revoke or terminate tasks, so
an open Flower must never start by accident (SPEC section 7: required outside dev).
"""

import os

DEVELOPMENT = os.environ.get("DJANGO_DEBUG", "").lower() in {"1", "true", "yes", "on"}

if not os.environ.get("FLOWER_BASIC_AUTH") and not DEVELOPMENT:
    raise SystemExit("FLOWER_BASIC_AUTH (user:password) is required unless DJANGO_DEBUG=1")

# Flower 2.2 serves its Prometheus /metrics without asking for the credentials its other pages
# need, and the metrics name tasks, worker hosts and pids: require them there too.
from flower.views.monitor import Metrics  # noqa: E402
from tornado import web  # noqa: E402

if not getattr(Metrics.get, "_importbeat_authenticated", False):
    Metrics.get = web.authenticated(Metrics.get)
    Metrics.get._importbeat_authenticated = True
