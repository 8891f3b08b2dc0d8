"""A worker process keeps its database connection from one task to the next.

Celery's Django fix-up closes every connection before and after each task, so every small run
paid for a new PostgreSQL session (a backend forked, authenticated, its caches cold): about a
quarter of a 100-row run's time (tests/bench/bench_small_runs.py). Instead, the worker treats a
task as Django treats a request: before and after it, `close_old_connections` drops a connection
that errored or outlived CONN_MAX_AGE, and CONN_HEALTH_CHECKS makes the first query of the next
task check that the connection still works (a database restarted between two tasks costs a
reconnect, not a failed run). The fix-up still closes them in a freshly forked pool process, so
no child shares its parent's connection.
"""

from __future__ import annotations

from typing import Any

from celery.signals import task_postrun, task_prerun
from django.db import close_old_connections


@task_prerun.connect
def _before_task(**_kwargs: Any) -> None:
    close_old_connections()


@task_postrun.connect
def _after_task(**_kwargs: Any) -> None:
    close_old_connections()
