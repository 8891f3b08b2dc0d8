"""The Celery application shared by the worker, beat, Flower and the web process."""

import os

from celery import Celery
from kombu.transport import TRANSPORT_ALIASES

from common import flower_options
from common.application_name import application_name

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

BROKER_TRANSPORT = "project.broker_transport:Transport"

# A Redis broker is served by kombu's Redis transport as importbeat extends it, under the
# scheme's own name: what names the broker then says redis://, as Flower's broker page and its
# queue lengths need (they know a broker by its URL's scheme, and answered 404 "broker is not
# supported" for the class path that CELERY_BROKER_TRANSPORT named). rediss:// keeps its name,
# by which kombu gives it its TLS defaults, and gets the same transport (it had kombu's).
TRANSPORT_ALIASES.update(redis=BROKER_TRANSPORT, rediss=BROKER_TRANSPORT)

# Every task's ETA is in the database's time, whichever host sends or receives it, and one
# killed at its hard time limit fails in words (project.task_class).
app = Celery("importbeat", task_cls="project.task_class:ImportbeatTask")
# Every Celery setting lives in Django settings under the CELERY_ namespace.
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["tasks"])

# Flower reads its FLOWER_* variables itself before anything of importbeat's but this module, and
# stopped with a traceback on a number it could not read: refused here first, in words.
if application_name() == "importbeat flower":
    flower_options.check(os.environ)

# The worker's start-up checks and its database control command; its database connections
# kept across tasks (CONN_MAX_AGE), checked between them; its consumer's repeats folded; its
# watch of beat; Celery's notice of a default it has chosen left out of its log; the refusal
# of a connection pool in transaction mode by the worker, beat, run_import and migrate.
from project import (  # noqa: E402, F401
    beat_watch,
    database_pooler,
    worker_checks,
    worker_connections,
    worker_held,
    worker_log,
    worker_warnings,
)
