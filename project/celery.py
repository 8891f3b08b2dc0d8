"""The Celery application shared by the worker, beat, Flower and the web process."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

# Every task's ETA is in the database's time, whichever host sends or receives it.
app = Celery("importbeat", task_cls="project.task_eta:DatabaseTimedTask")
# Every Celery setting lives in Django settings under the CELERY_ namespace.
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["tasks"])

# The worker's start-up checks and its database control command; its database connections
# kept across tasks (CONN_MAX_AGE), checked between them; its consumer's repeats folded.
from project import worker_checks, worker_connections, worker_log  # noqa: E402, F401
