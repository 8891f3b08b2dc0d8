"""Flower's configuration file, read by `celery flower` (Procfile `flower`) from the working
directory before it starts.

Flower reads FLOWER_BASIC_AUTH (`user:password`) from the environment by itself. Outside
development it is required: Flower lists task arguments and can revoke or terminate tasks, so
an open Flower must never start by accident (SPEC section 7: required outside dev).
"""

import os

from common import flower_options
from common.switches import switch

# The words Django's settings take (common.switches): Flower took `DJANGO_DEBUG=y` for off where
# Django took it for on; now a word that is neither stops both, naming the variable.
try:
    DEVELOPMENT = switch("DJANGO_DEBUG", os.environ.get("DJANGO_DEBUG"), default=False)
except ValueError as error:
    raise SystemExit(str(error)) from None

if not os.environ.get("FLOWER_BASIC_AUTH") and not DEVELOPMENT:
    raise SystemExit("FLOWER_BASIC_AUTH (user:password) is required unless DJANGO_DEBUG=1")

# Flower 2.2 serves its Prometheus /metrics without asking for the credentials its other pages
# need, and the metrics name tasks, worker hosts and pids: require them there too.
from flower.views.monitor import Metrics
from tornado import web

if not getattr(Metrics.get, "_importbeat_authenticated", False):
    Metrics.get = web.authenticated(Metrics.get)
    Metrics.get._importbeat_authenticated = True


# Flower's own log of a broker it cannot use, said in words and folded (common/flower_words.py).
from common.flower_words import install as _install_flower_words

_install_flower_words()

# Its numbers (FLOWER_PURGE_OFFLINE_WORKERS, FLOWER_MAX_TASKS, FLOWER_PORT), refused in words:
# Flower took -1 as it was. One it cannot read at all is refused before Flower reads it, by the
# Celery app (project.celery), as this file is read after.
flower_options.check(os.environ)
