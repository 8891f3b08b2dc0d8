"""A task's ETA travels in the database's time (common.database_clock), not a host's.

Celery turns a retry's countdown into an ETA on the sending host's clock, and the worker that
receives the message waits until its own clock reaches it. A worker five minutes fast made the
retries it sent wait five minutes longer on any other worker (a run's backoff, a run waiting
for its import's lease, a notification's retry); one five minutes slow made them run at once,
its backoff lost. Now the sender writes the ETA in the database's time, and the receiving
worker reads it back on its own clock, each by the offset it measured. A worker's offset is
the one its start-up check measured, and every answer it gives health measures it again
(project.worker_checks): the consumer that reads messages keeps no database connection of its
own, which its forked pool processes would inherit.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from celery.signals import before_task_publish
from celery.worker.request import Request

from common import database_clock


@before_task_publish.connect(weak=False, dispatch_uid="importbeat.task_eta")
def _eta_in_the_databases_time(headers: dict[str, Any] | None = None, **_kwargs: Any) -> None:
    eta = (headers or {}).get("eta")
    if not eta:
        return
    offset = database_clock.offset()
    if offset:
        headers["eta"] = (datetime.fromisoformat(eta) + timedelta(seconds=offset)).isoformat()


class DatabaseTimedRequest(Request):
    """A received task whose ETA, in the database's time, is read on this host's clock."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        offset = database_clock.known_offset()
        if self._eta is not None and offset:
            self._eta -= timedelta(seconds=offset)
